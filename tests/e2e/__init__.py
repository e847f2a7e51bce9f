"""The boot tests (nox -s e2e, root): cached Debian roots booted with systemd as PID 1 in
systemd-nspawn (container, make-root.sh) and an arm64 machine under qemu (machine_arm64), which
merge, start and update real images (test_*); docs/boot-tests.md says what each checks."""
