"""The image formats as one table (table: Format, FORMATS): per format, its packer and its
arguments (squashfs: mksquashfs, erofs: mkfs.erofs, both given a recipe), its reader picked by
magic, its compressions, its build-info fields and tools, its superblock check. Everything else
asks the table instead of branching on a format's name. For a DDI: gpt writes its GPT disk
image as systemd-repart lays it out, verity its dm-verity hash partition as systemd-repart does,
salt and UUID from its --seed, veritysig its signature partition's JSON, ddi the
three assembled into one disk image, by systemd-repart 255+ itself where it is on PATH (repart).
The transport table (transport): how a release compresses an image for the wire, every setting
that decides the bytes fixed."""
