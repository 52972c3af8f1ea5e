"""Guest images: what a machine boots besides the kernel. One module per
kind: initramfs.py today (busybox, static workloads, our init)."""
