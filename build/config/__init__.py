"""What a build is asked to do: the option table of every task (options) and the refusal of
settings that name no option (configkeys), the parsed options of one build and every path derived
from them (spec), the version x architecture matrix (matrix), and what a step is given to do its
work (context: the StepContext the pipeline's runner satisfies)."""
