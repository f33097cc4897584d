"""What the two export formats share: the metadata key, the format version, the manifest of the files an export
wrote (read before anything else of the folder is), and the [export] extra that ONNX needs."""
import json
import os

from data.errors import InputError

METADATA_KEY = "multi_label"


FORMAT_VERSION = 3  # engine/formats.py: what each format holds, and the upgrade of older ones


ONNX_FILE = "model.onnx"


REMOTE_CODE_FILE = "modeling_multilabel.py"


AGREEMENT = 1e-4  # the largest difference of a probability an export may show against the checkpoint


MANIFEST_FILE = "export-manifest.json"  # the files an export wrote, with their sizes: written last


BINARY = (".safetensors", ".onnx", ".bin", ".npz")  # files whose size must be as written (hand-edited text files may differ)


class ExportError(InputError):
    """An export that cannot be made or read: one line naming what is wrong."""


def write_manifest(folder: str) -> None:
    files = {name: os.path.getsize(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}
    with open(os.path.join(folder, MANIFEST_FILE), "w", encoding="utf-8") as f:
        json.dump({"written_by": "export.py", "format_version": FORMAT_VERSION, "files": files}, f, indent=2)


def read_manifest(folder: str) -> dict | None:
    """{file name: size} of what the export in `folder` wrote; None where there is no manifest (an export from
    from before manifests, or not an export)."""
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            files = json.load(f)["files"]
        if not all(isinstance(n, str) and n == os.path.basename(n) and n not in ("", ".", "..")
                   and isinstance(v, int) for n, v in files.items()):
            raise ValueError("a file name or size of another kind")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{path}: not a manifest export.py wrote ({type(e).__name__})") from None
    return files


def export_problem(folder: str) -> str | None:
    """What makes the export in `folder` unusable, read before any of it is used, or None: a file it wrote that is
    missing, or weights of another size than were written (a copy cut short)."""
    for name, size in (read_manifest(folder) or {}).items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return f"{path}: missing; the export wrote it (copy the whole folder, or export again)"
        found = os.path.getsize(path)
        if name.endswith(BINARY) and found != size:
            return (f"{path}: {found:,} bytes, but the export wrote {size:,} (cut short by an interrupted copy?); "
                    "copy it again, or export again")
    return None


def require_onnx() -> None:
    """ONNX export and serving need the [export] extra (torch's exporter runs on onnxscript)."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"--format onnx needs {', '.join(missing)}: pip install -e '.[export]'")
