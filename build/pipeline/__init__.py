"""The steps of a build in one table (steps), the runner that walks it (runner), what clean
removes (clean), and invoke verify over every image built, as built (verifybuilt). The only
package that knows every phase."""
