"""kstress: build real kernels, boot them in QEMU, stress their memory
management, and report what the console says."""

__version__ = "0.1.0"
