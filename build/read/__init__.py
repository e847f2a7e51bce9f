"""Bounded readers of the two image formats, as the kernel reads them (squashfs, erofs, lz4native),
behind one interface (image). Never unsquashfs or dump.erofs; no root."""
