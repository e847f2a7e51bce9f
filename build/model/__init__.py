"""The nouns of a build, below every phase: architectures (arch), what a version is (versions),
every file name the tool writes (names), the manifest of what it wrote (manifest), the make rule
that decides what is out of date (rule) and what one check of an image found (check)."""
