"""What a build is asked to do: the option table of every task (options), the parsed options of one
build and every path derived from them (spec), and the version x architecture matrix (matrix)."""
