"""The model: an encoder with pooling and a linear head (classifier.py), the encoders it loads (encoders.py), the
fused TF-IDF + embedding head (fused_head.py), the CPU fast paths (cpu_fast.py), and the export formats, written
(export_write.py) and read back for serving (export_read.py)."""
