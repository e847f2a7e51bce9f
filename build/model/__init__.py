"""The nouns of a build, below every phase: architectures (arch), what a version is (versions),
every file name the tool writes (names), the manifest of what it wrote (manifest), the make rule
that decides what is out of date (rule), what one check of an image found (check), the
partitions of a sysext DDI with the UUIDs systemd-repart gives them and its --seed (ddi), and the
one way the files of build/templates/ are rendered (templates)."""
