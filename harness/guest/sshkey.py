"""A fresh SSH key per guest: the only way into it (no passwords anywhere).

The private key stays in the machine's private runtime directory (0700,
removed with the machine), never in the results; the public key reaches the
guest through QEMU's fw_cfg, so the cached image never holds a key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FW_CFG_NAME = "opt/kstress/authorized_keys"  # read by the image's kstress-keys.service


def make_key(directory: Path) -> tuple[Path, Path]:
    """An ed25519 key pair in ``directory``: (private key, public key), both 0600."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    paths = (Path(directory) / "id_ed25519", Path(directory) / "id_ed25519.pub")
    for path, data in zip(paths, (private, public + b" kstress\n")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return paths
