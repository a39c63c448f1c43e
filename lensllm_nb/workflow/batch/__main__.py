"""The process of one batch job: ``python -m lensllm_nb.workflow.batch`` (see `execute.run_job`).

It reads the job from stdin, runs its notebook and writes the job's result file.
"""

from .execute import _child_main

if __name__ == "__main__":
    _child_main()
