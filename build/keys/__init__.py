"""OpenPGP keys: throwaway gpg homes (gpghome), reading gpg's key listings (keylisting), the keys
an image carries for a rotation (trustkeys), and signing release files (signing)."""
