"""export.py's work, imported once its flags have parsed: a checkpoint's model written as a Hugging Face folder or
ONNX (model/exported.py), measured against the checkpoint, then moved into place whole."""
import os
import shutil
import tempfile

from engine.checkpoint import load_checkpoint
from engine.config import EXPORT_FIELDS, check_machine, check_values
from model.exported import METADATA_KEY, ONNX_FILE, REMOTE_CODE_FILE, ExportError, export_model, require_onnx


def is_export(folder: str) -> bool:
    """Whether `folder` holds what export_model writes (and so may be replaced by --overwrite)."""
    if os.path.isfile(os.path.join(folder, ONNX_FILE)):
        return True
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            return f'"{METADATA_KEY}"' in f.read()
    except (OSError, UnicodeDecodeError):
        return False


def check_out(out: str, overwrite: bool) -> None:
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise ExportError(f"--out {out}: is a file; name a folder")
    if not overwrite:
        raise ExportError(f"--out {out}: exists; give --overwrite to replace an earlier export")
    if os.listdir(out) and not is_export(out):
        raise ExportError(f"--out {out}: holds files export.py did not write; it replaces only an earlier export")


def export_checkpoint(flags: dict) -> dict:
    """export.py: write the checkpoint's model to --out (in a hidden folder beside it first, so a failed export
    leaves --out as it was) and print how it agrees with the checkpoint and how to load it."""
    check_values(EXPORT_FIELDS, flags)
    check_machine(EXPORT_FIELDS, flags)
    out = os.path.abspath(flags["out"])
    check_out(out, flags["overwrite"])
    if flags["format"] == "onnx":
        require_onnx()
    state = load_checkpoint(flags["ckpt"])
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    try:
        result = export_model(state, os.path.join(staging, "export"), flags["format"])
        if os.path.exists(out):
            os.rename(out, os.path.join(staging, "replaced"))
        os.rename(os.path.join(staging, "export"), out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {flags['out']}: {result['class']}; probabilities within {result['max_abs_difference']:.1e} of the "
          f"checkpoint's on {len(state['label_names'])} labels")
    print(f"  python predict.py --ckpt {flags['out']} \"some text\"")
    if flags["format"] == "hf":
        remote = ", trust_remote_code=True" if result["remote_code"] else ""
        print(f"  transformers.pipeline(\"text-classification\", model=\"{flags['out']}\", top_k=None{remote})"
              + (f"  (runs {REMOTE_CODE_FILE}: the run's {state['config']['pooling']} pooling)" if remote else ""))
    return result
