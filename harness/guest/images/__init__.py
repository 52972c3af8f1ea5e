"""Guest images: what a machine boots besides the kernel. One module per
kind: initramfs.py (busybox, static workloads, our init) and debian.py
(bookworm on a disk)."""

# The programs each image offers workloads besides their own files in /usr/bin.
# A workload kind's guest_needs (stress/manifest.py KINDS) are checked against
# these when a run is planned: a workload needing what the image lacks is
# skipped with the reason. Debian's come from images/debian/packages (a test
# checks that each is listed there).
PROGRAMS: dict[str, frozenset[str]] = {
    "initramfs": frozenset(),  # busybox only
    "debian": frozenset({"python3", "stress-ng", "numactl"}),
}
