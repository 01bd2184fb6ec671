"""``python -m mribench`` (also what ``torchrun -m mribench run ...`` launches)."""
from mribench.cli import app

app(prog_name="mribench")
