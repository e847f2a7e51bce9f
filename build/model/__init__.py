"""The nouns of a build, below every phase: architectures (arch), every file name the tool writes
(names), the manifest of what it wrote (manifest) and the make rule that decides what is out of
date (rule)."""
