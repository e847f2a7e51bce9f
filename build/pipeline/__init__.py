"""The steps of a build in one table (steps), the runner that walks it (runner), and what clean
removes (clean). The only package that knows every phase."""
