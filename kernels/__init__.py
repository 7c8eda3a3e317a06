"""probexit.kernels: fused GPU kernels, each with a torch reference and a dispatcher that works on CPU.

Importing the package does no work (no torch); the kernels live in their modules.
"""

BACKENDS = ("auto", "triton", "torch", "numpy")  # how the probe dispatcher may score rows (`probe_score`)
