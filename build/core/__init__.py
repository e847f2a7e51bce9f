"""The mechanics every phase uses and nothing else: one way to fail (errors), to say what happened
(report) and how far a silent tool got (toolprogress), to run a tool (run) and name the package
that brings it (tools), to write a file atomically (fileio), to read hostile bytes within bounds
(safeio), to hash files in sha256sum's format (sums), to stop on a signal (signals), to check a
URL (urls), the command line's suggestions (cli) and its quiet end once its reader is gone
(pipes). Imports nothing else from build/."""
