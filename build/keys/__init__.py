"""Keys: throwaway gpg homes (gpghome), reading gpg's key listings (keylisting), the OpenPGP keys
an image carries for a rotation (trustkeys), signing release files (signing), and signing a DDI's
dm-verity root hash with an X.509 key as systemd-repart does, checked as systemd does
(veritysign)."""
