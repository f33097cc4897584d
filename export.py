"""Write a trained checkpoint's model in a form others serve: a Hugging Face folder, or ONNX.

    python export.py --ckpt runs/<run>/best.pt --out exported/my-model
    python export.py --ckpt runs/<run>/best.pt --out exported/my-model-onnx --format onnx
    python predict.py --ckpt exported/my-model "some text"
"""
from engine.config import parse_flags, with_defaults
from engine.settings import EXPORT_FIELDS


def main(argv=None) -> dict:
    flags = with_defaults(EXPORT_FIELDS, parse_flags(EXPORT_FIELDS, argv,
                                                     "Export a multi-label classifier checkpoint."))
    from engine.serving.export import export_checkpoint
    from engine.cli import run_cli

    return run_cli(export_checkpoint, flags)


if __name__ == "__main__":
    main()
