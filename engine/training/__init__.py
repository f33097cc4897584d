"""train.py's run: its config resolved (run_config.py), its data (run_data.py), its state (state.py, optim.py), the
epoch loop (trainer.py, loop.py, validation.py, head_fit.py), its checkpoints, folder and logs."""
