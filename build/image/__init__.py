"""Making the image: what it holds (content), staging that tree (stage, render, elf, conflines),
packing it (pack, buildinfo), its checksum and the compat name (checksum, alias)."""
