"""pytest, never the internet: one test module per concern (test_*), fed by helper modules
shared between them: a fake Alloy release of small generated ELF files (fakes) served on
127.0.0.1 (rawserver for the faults an ordinary server will not make), trees and images as the
build lays them out (trees, erofs_craft, image), throwaway gpg keys (gpgkeys), what a finished run
must look like (results), and tools or root asked for in one way (needs: a skip that fails under
CI=true)."""
