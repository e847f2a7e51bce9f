"""Verifying an image: its checks (checks), the image as the kernel shows it (kernelview), and real
systemd-sysext merges in scratch roots (merge). What this machine can check for real (machine)
and what the verify step is made from (stepinputs) are apart: an up-to-date build asks only
those."""
