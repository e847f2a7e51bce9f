"""Bounded readers of the two image formats, as the kernel reads them (squashfs, erofs, lz4native),
behind one interface (image), and of a DDI: its GPT partition table (gpt), its dm-verity hash
tree (verity: its layout and hashing, veritycheck: the whole tree checked against the data and a
root hash), its signature partition's JSON (veritysig), and the whole of it checked offline
(ddi). Never unsquashfs, dump.erofs, veritysetup or a loop device; no root."""
