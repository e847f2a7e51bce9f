"""Bounded readers of the two image formats, as the kernel reads them (squashfs, erofs, lz4native),
behind one interface (image), and a DDI's GPT partition table (gpt). Never unsquashfs,
dump.erofs or a loop device; no root."""
