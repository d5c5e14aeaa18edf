"""The core's built-in components, registered through the same hook as any third party.

Nothing here imports torch: factories are ``"module:attribute"`` strings resolved on first use.
"""

from __future__ import annotations

from diffctl.datasets.configs import GMMRingConfig, TwoMoonsConfig
from diffctl.datasets.image_configs import (
    CIFAR10Config,
    DigitsConfig,
    ImageFolderConfig,
    MNISTConfig,
)
from diffctl.evaluation.configs import TestLossConfig
from diffctl.hookspecs import hookimpl
from diffctl.loggers.configs import CsvLoggerConfig, JsonlLoggerConfig, TensorBoardLoggerConfig
from diffctl.samplers.configs import (
    AncestralConfig,
    DDIMConfig,
    DPMSolverPP2MConfig,
    EulerConfig,
    HeunConfig,
)
from diffctl.schedules.configs import (
    CosineScheduleConfig,
    LinearScheduleConfig,
    ScaledLinearScheduleConfig,
    SigmoidScheduleConfig,
)


@hookimpl
def register_components(registry) -> None:
    add = registry.add
    # noise schedules (kind "scheduler"): one class, four beta recipes
    add("scheduler", "linear", factory="diffctl.schedules.noise_schedule:NoiseSchedule",
        config=LinearScheduleConfig,
        summary="Linear betas 1e-4..0.02 over T = 1000 steps (Ho et al. 2020).")
    add("scheduler", "cosine", factory="diffctl.schedules.noise_schedule:NoiseSchedule",
        config=CosineScheduleConfig,
        summary="Cosine alpha-bar, s = 0.008, betas clipped at 0.999 (Nichol & Dhariwal 2021).")
    add("scheduler", "scaled-linear", factory="diffctl.schedules.noise_schedule:NoiseSchedule",
        config=ScaledLinearScheduleConfig,
        summary="Betas linear in sqrt-space, 0.00085..0.012 (Stable Diffusion's schedule).")
    add("scheduler", "sigmoid", factory="diffctl.schedules.noise_schedule:NoiseSchedule",
        config=SigmoidScheduleConfig,
        summary="Betas following a sigmoid over [-6, 6] between beta_start and beta_end.")
    # samplers (kind "sampler"): stateless functions over a precomputed time grid
    add("sampler", "ancestral", factory="diffctl.samplers.ancestral:AncestralSampler",
        config=AncestralConfig,
        summary="DDPM ancestral sampling from the posterior q(x_s | x_t, x0) (Ho et al. 2020).")
    add("sampler", "ddim", factory="diffctl.samplers.ddim:DDIMSampler", config=DDIMConfig,
        summary="DDIM with eta; eta = 0 is deterministic, eta = 1 is DDPM (Song et al. 2021).")
    add("sampler", "euler", factory="diffctl.samplers.euler:EulerSampler", config=EulerConfig,
        summary="Euler steps on the probability-flow ODE in sigma space (Karras et al. 2022).")
    add("sampler", "heun", factory="diffctl.samplers.heun:HeunSampler", config=HeunConfig,
        summary="Heun's second-order ODE solver, EDM Algorithm 1/2 (Karras et al. 2022).")
    add("sampler", "dpmpp-2m", factory="diffctl.samplers.dpmpp_2m:DPMSolverPP2MSampler",
        config=DPMSolverPP2MConfig,
        summary="DPM-Solver++(2M), multistep second order in log-SNR (Lu et al. 2022).")
    # datasets (kind "dataset"): synthetic 2-D sets with a held-out split and fresh draws
    add("dataset", "two-moons", factory="diffctl.datasets.moons:TwoMoons", config=TwoMoonsConfig,
        summary="scikit-learn's two interleaving moons (default noise 0.1, 20 000 points).",
        data="points", default=True, recipe={"sample": {"num_samples": 5000}})
    add("dataset", "gmm-ring", factory="diffctl.datasets.gmm:GMMRing", config=GMMRingConfig,
        summary="Equal-weight Gaussians on a circle (default 8 modes, radius 5, std 0.2).",
        data="points", provides=("modes",), recipe={"sample": {"num_samples": 5000}})
    # image datasets (kind "dataset"): (C, H, W) in [-1, 1]; torchvision only to download
    add("dataset", "mnist", factory="diffctl.datasets.mnist:MNIST", config=MNISTConfig,
        summary="MNIST digits, 60 000 train / 10 000 test, 28x28 padded to 1x32x32.",
        data="images", recipe={"sample": {"num_samples": 1000}})
    add("dataset", "cifar10", factory="diffctl.datasets.cifar10:CIFAR10", config=CIFAR10Config,
        summary="CIFAR-10, 50 000 train / 10 000 test, 3x32x32, optional horizontal flips.",
        data="images", recipe={"sample": {"num_samples": 1000}})
    add("dataset", "digits", factory="diffctl.datasets.digits:Digits", config=DigitsConfig,
        summary="scikit-learn's 1797 8x8 digits upsampled to 1x16x16; no download needed.",
        data="images", default=True, recipe={"sample": {"num_samples": 500}})
    add("dataset", "image-folder", factory="diffctl.datasets.image_folder:ImageFolder",
        config=ImageFolderConfig,
        summary="A folder of PNG/JPEG images (class subfolders optional), resized and cropped.",
        data="images", recipe={"sample": {"num_samples": 500}})
    # metrics of the model itself (kind "metric", ModelMetric protocol): no sampling
    add("metric", "test-loss", factory="diffctl.evaluation.test_loss:HeldOutLoss",
        config=TestLossConfig,
        summary="Denoising loss on the held-out split, averaged over evenly spread timesteps.",
        input="model")
    # loggers (kind "logger"): where training and evaluation records go; jsonl is always on
    add("logger", "jsonl", factory="diffctl.loggers.jsonl:JsonlLogger", config=JsonlLoggerConfig,
        summary="train.jsonl and metrics.jsonl in the run directory (always on).")
    add("logger", "csv", factory="diffctl.loggers.csv_logger:CsvLogger", config=CsvLoggerConfig,
        summary="train.csv and metrics.csv in the run directory.")
    add("logger", "tensorboard", factory="diffctl.loggers.tensorboard:TensorBoardLogger",
        config=TensorBoardLoggerConfig,
        summary="TensorBoard event files: losses, metrics with floors, sample grids.")
