"""The boot tests (nox -s e2e, root): cached Debian roots booted with systemd as PID 1 in
systemd-nspawn (container, make-root.sh) and arm64 and x86-64 (dm-verity) machines under qemu
(machine), which merge, start and update real images (test_*); docs/boot-tests.md says what
each checks."""
