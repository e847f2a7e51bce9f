"""Verifying an image: its checks (checks), the image as the kernel shows it (kernelview), and real
systemd-sysext merges in scratch roots (merge)."""
