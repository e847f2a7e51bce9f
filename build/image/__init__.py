"""Making the image: what it holds (content), staging that tree (stage, render, elf, conflines;
the files rendered beside the binary and the stage step's record of them: stagedfiles), packing
it (pack, buildinfo; what it packs with and records: packrecipe; a DDI's verity signer: signer),
its checksum and the compat name (checksum, alias). An up-to-date build imports only
stagedfiles, packrecipe and alias of these."""
