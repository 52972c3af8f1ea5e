"""Guest stage: a QEMU machine (machine.py, accel.py), the image it boots
(images/) and the channels that carry commands to it (channels/)."""
