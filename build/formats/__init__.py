"""The image formats: per format, its packer and its arguments, its reader, its compressions;
everything else asks here instead of branching on a format's name."""
