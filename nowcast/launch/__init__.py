"""Launching params sets: locally through papermill (`nowcast run`) or as a SLURM array
(`nowcast sweep`), and the glue the notebook experiments/train.ipynb calls.

One params set = one run of experiments/train.ipynb = one folder results/<job_id>/:

    nowcast run params/smoke.yaml params/demo/*.yaml        # one after another, here
    nowcast sweep params/grids/example.yaml --partition gpu  # one SLURM array task per set

Modules, one job each:

- `params`: params sets. A set is a YAML file (params/*.yaml) or one point of a grid file
  (params/grids/*.yaml: `base` + `axes`); `collect` validates every set (load_config: unknown
  keys, wrong types, impossible combinations; missing data files) before anything runs or is
  submitted.
- `notebook`: what the notebook calls (`begin_parameters`, `notebook_config`,
  `run_notebook_experiment`, `show_results`), and its parameters cell generated from Config's
  field metadata (`parameters_cell`, `sync_notebook`: `python -m nowcast sync-notebook`).
- `local`: one set through papermill (`run_one`), signal forwarding to the kernel, `nowcast run`
  (`run_local`), one SLURM array task (`task_main`: `python -m nowcast task PARAMS`), with
  several processes started by srun (`run_ranks`, `rank_worker`; docs/multi_gpu.md).
  (`nowcast train` needs no launcher: `experiment.train_from_params`.)
- `slurm`: `nowcast sweep`. Pure functions build the sbatch command lines (`array_command`,
  `report_command`) and, for several processes per task (`Launch`), the srun line and each
  rank's environment (`srun_command`, `rank_env`); `submit_sweep` writes the sweep folder and
  runs them.

How a launched run ends up with its executed notebook inside its results folder: the launcher
picks the job id and runs the notebook with papermill into a staging file, injecting the
notebook's own parameter `finalize=False`, so that the notebook leaves the run in
results/.running-<job_id>/; when papermill is done, the launcher moves the executed notebook in
and completes the run (results.complete_run; results.fail_run on failure). Run by hand
(`papermill experiments/train.ipynb out.ipynb -f params/smoke.yaml`), finalize keeps its
default True and the notebook completes its own run.

Preemption (SLURM): the batch script forwards SIGUSR1/SIGTERM to the task; the task forwards
them to the notebook's kernel, where training checkpoints and stops (stopping.Preempted) and
run_experiment marks the folder `preempted` in its status.json; the task then exits with
EXIT_REQUEUE (75) and the batch script requeues the job, which resumes from the checkpoint in
results/.running-<job_id>/ (same array job and task ids, same folder). With several processes
the task forwards the signals to srun, which passes them on to every rank; the ranks agree on
the step to stop at (distributed.strongest_signal) and rank 0 saves the checkpoint.
"""
