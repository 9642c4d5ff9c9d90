"""Load and validate model and target configs.

Every config is checked against the schema below when it is loaded, before any task runs:
an unknown key, a wrong type or a missing model directory stops the build with one line that
names the file, the key and the fix. Nothing here imports torch or tvm.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from stages.engine import model_dir

ROOT = Path(__file__).resolve().parents[2]   # the checkout: the one definition of it
CONFIGS = ROOT / "configs"
# What a bare `doit build` builds: the project's trained model (configs/models/shapes.toml) for
# the page (configs/targets/webgpu.toml). The test suite names tiny and llvm instead.
DEFAULT_MODEL = "shapes"
DEFAULT_TARGET = "webgpu"

# vae_encoder (image -> the latent distribution's moments) is image-to-image's first step.
COMPONENTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
# A component is built once per precision its target lists. The float32 variant keeps the
# component's name; the others add a suffix: `emit:unet` (float32), `emit:unet-fp16`.
PRECISIONS = {"float32": "", "float16": "-fp16"}
# Optional GPU features a target may build for (`target.features`): each adds one variant of
# every component in float16 that needs the feature, which the page runs only where the adapter
# has it: `unet-fp16-sm` (subgroup matrices: stages/passes/subgroup_matrix.py).
FEATURES = {"subgroup-matrix": "-sm"}
# The WebGPU adapter features each needs, besides the float16 variants' shader-f16; and the
# subgroup size its kernels are laid out for (the adapter must report exactly it).
WEBGPU_FEATURES = {"subgroup-matrix": ("subgroups", "chromium-experimental-subgroup-matrix")}
SUBGROUP_SIZE = {"subgroup-matrix": 32}
# Workgroup memory its kernels use at most (the GEMMs stage their operands there:
# stages/passes/subgroup_matrix.py never plans above it); every desktop GPU offers 32 KiB.
WORKGROUP_STORAGE = {"subgroup-matrix": 32768}


# The components whose shapes follow the image size: each extra size of `model.sizes` adds a
# variant of each (`unet-768x512`, width x height), which shares the component's weights and
# parameter shards; the text encoder is the same at every size.
SIZED = ("unet", "vae_decoder", "vae_encoder")
_SIZE = re.compile(r"-(\d+)x(\d+)$")


def variant_name(component: str, precision: str, features: tuple[str, ...] = (),
                 size: tuple[int, int] | None = None) -> str:
    """`unet`, `unet-fp16-sm`, `unet-768x512-fp16`: the component, its image size when it is
    not the model's default, its precision and features."""
    sized = f"{component}-{size[0]}x{size[1]}" if size else component
    return sized + PRECISIONS[precision] + "".join(FEATURES[f] for f in features)


def parse_size(text: str) -> tuple[int, int] | None:
    """"768x512" -> (768, 512), width x height; None if it is not written so."""
    m = _SIZE.match("-" + text)
    return (int(m[1]), int(m[2])) if m else None


# model.weights -> the pass features of the components it applies to (pipeline.Step.features)
WEIGHT_FEATURES = {"int8": ("int8-weights", ("text_encoder", "unet"))}


def weight_features(model: dict, component: str) -> tuple[str, ...]:
    """The pass features a model's `weights` setting gives a component (base name)."""
    feature = WEIGHT_FEATURES.get(model["model"].get("weights", "float"))
    return (feature[0],) if feature and component in feature[1] else ()


def variant_features(variant: str) -> tuple[str, ...]:
    """`unet-fp16-sm` -> ("subgroup-matrix",); `unet-fp16` -> ()."""
    found = []
    for feature, suffix in reversed(FEATURES.items()):
        if variant.endswith(suffix):
            found.insert(0, feature)
            variant = variant[:-len(suffix)]
    return tuple(found)


def _shaped(variant: str) -> tuple[str, str]:
    """The variant without features and precision (`unet-768x512`), and its precision."""
    for suffix in (FEATURES[f] for f in reversed(variant_features(variant))):
        variant = variant[:-len(suffix)]
    for precision, suffix in PRECISIONS.items():
        if suffix and variant.endswith(suffix):
            return variant[:-len(suffix)], precision
    return variant, "float32"


def split_variant(variant: str) -> tuple[str, str]:
    """`unet-fp16` -> ("unet", "float16"); `unet` -> ("unet", "float32"); a feature or size
    variant (`unet-fp16-sm`, `unet-768x512-fp16`) -> its component and precision."""
    shaped, precision = _shaped(variant)
    return _SIZE.sub("", shaped), precision


def variant_size(variant: str) -> tuple[int, int] | None:
    """`unet-768x512-fp16` -> (768, 512); None for a variant at the model's default size."""
    m = _SIZE.search(_shaped(variant)[0])
    return (int(m[1]), int(m[2])) if m else None


def shape_variant(variant: str) -> str:
    """The variant that fixes a graph's shapes: `unet-768x512-fp16-sm` -> `unet-768x512`
    (capture and import run once per component and size, whatever the precision)."""
    return _shaped(variant)[0]


def default_variant(variant: str) -> str:
    """The same variant at the model's default size: `unet-768x512-fp16` -> `unet-fp16`, whose
    parameter shards every size shares."""
    shaped, precision = _shaped(variant)
    return variant_name(_SIZE.sub("", shaped), precision, variant_features(variant))


def flavor(precision: str, features: tuple[str, ...] = ()) -> str:
    """What the page chooses between: a precision, with the features its variants need
    ("float16+subgroup-matrix")."""
    return "+".join((precision, *features))


class ConfigError(Exception):
    """A config problem, worded as one line: file, key, what is wrong, and the fix."""


@dataclass(frozen=True)
class AnyOf:
    """A key that accepts any of several types (diffusers' per-block lists: an int or [int])."""

    specs: tuple


INT_OR_LIST = AnyOf((int, [int]))
BOOL_OR_LIST = AnyOf((bool, [bool]))

# Each section maps its keys to the accepted type: int, float, str, bool, [int], [str],
# dict, a tuple of allowed values, or AnyOf. The architecture sections take the keys of
# transformers' CLIPTextConfig and diffusers' UNet2DConditionModel / AutoencoderKL configs that
# SD 1.x / 2.x models set (a local model's config.json carries them all: stages/engine/model_dir.py).
_ARCH_TEXT = {
    "vocab_size": int, "max_position_embeddings": int, "hidden_size": int,
    "intermediate_size": int, "num_hidden_layers": int, "num_attention_heads": int,
    "hidden_act": str, "projection_dim": int, "layer_norm_eps": float,
    "attention_dropout": float, "dropout": float, "initializer_range": float,
    "initializer_factor": float, "bos_token_id": int, "eos_token_id": int, "pad_token_id": int,
}
_ARCH_UNET = {
    "in_channels": int, "out_channels": int, "block_out_channels": [int],
    "layers_per_block": int, "down_block_types": [str], "up_block_types": [str],
    "mid_block_type": str, "attention_head_dim": INT_OR_LIST, "num_attention_heads": INT_OR_LIST,
    "norm_num_groups": int, "norm_eps": float, "cross_attention_dim": int,
    "sample_size": int, "use_linear_projection": bool, "upcast_attention": bool,
    "only_cross_attention": BOOL_OR_LIST, "dual_cross_attention": bool, "act_fn": str,
    "center_input_sample": bool, "flip_sin_to_cos": bool, "freq_shift": int,
    "downsample_padding": int, "mid_block_scale_factor": float,
    "resnet_time_scale_shift": str, "transformer_layers_per_block": INT_OR_LIST,
    "dropout": float,
}
_ARCH_VAE = {
    "in_channels": int, "out_channels": int, "latent_channels": int,
    "block_out_channels": [int], "layers_per_block": int, "down_block_types": [str],
    "up_block_types": [str], "norm_num_groups": int, "scaling_factor": float,
    "sample_size": int, "act_fn": str, "force_upcast": bool, "mid_block_add_attention": bool,
    "use_quant_conv": bool, "use_post_quant_conv": bool,
}
MODEL_SCHEMA = {
    "model": {
        "init": ("random", "pretrained"), "seed": int, "image_size": int,
        # more image sizes, "WIDTHxHEIGHT" (multiples of Config.size_step): a variant of the
        # UNet and the VAE per size, sharing their weights (the page and generate offer them)
        "sizes": [str],
        # 2: classifier-free guidance (the UNet on [negative prompt, prompt]); 1: a
        # guidance-free model (SD-Turbo, LCM): the UNet at batch 1, half the cost of a step
        "guidance_batch": (1, 2), "path": str,
        "extends": str,   # another configs/models TOML this one changes key by key
        # "int8": the UNet's and text encoder's weights stored as int8 with a scale per
        # output channel, dequantized on the GPU (stages/passes/int8_weights.py)
        "weights": ("float", "int8"),
    },
    # What the page's form and `doit generate` start from, as the model card says (a few-step
    # model: its steps, guidance and sampler); stages/runtime/contract.py's otherwise.
    "defaults": {"steps": int, "guidance": float, "sampler": str},
    "text_encoder": _ARCH_TEXT,
    "unet": _ARCH_UNET,
    "vae": _ARCH_VAE,
    "scheduler": {
        "class_name": ("PNDMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler",
                       "DDIMScheduler", "LMSDiscreteScheduler",
                       "EulerAncestralDiscreteScheduler", "LCMScheduler"),
        "num_train_timesteps": int, "beta_start": float, "beta_end": float,
        "beta_schedule": str, "set_alpha_to_one": bool, "skip_prk_steps": bool,
        "steps_offset": int, "prediction_type": ("epsilon", "v_prediction"),
        "timestep_spacing": ("leading", "linspace", "trailing"), "clip_sample": bool,
        "original_inference_steps": int, "timestep_scaling": float,
    },
}
OPTIONAL_SECTIONS = ("defaults",)
TARGET_SCHEMA = {
    "target": {"tvm": dict, "library": ("so", "wasm"), "precisions": [tuple(PRECISIONS)],
               "features": [tuple(FEATURES)],
               "shard_mb": int, "max_storage_buffer_binding_size": int},
    "verify": {"max_rel_l2": float, "max_rel_l2_fp16": float, "seed": int},
    "tune": {"trials": int, "top": int, "trials_per_iter": int, "builder_timeout_s": int,
             "runner_timeout_s": int, "rpc_tracker": str, "rpc_key": str},
}


def _type_name(spec) -> str:
    if isinstance(spec, AnyOf):
        return " or ".join(_type_name(s) for s in spec.specs)
    if isinstance(spec, tuple):
        return "one of " + ", ".join(repr(s) for s in spec)
    if isinstance(spec, list):
        return f"a list of {_type_name(spec[0]) if isinstance(spec[0], tuple) else spec[0].__name__}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            dict: "a table"}[spec]


def _matches(value, spec) -> bool:
    if isinstance(spec, AnyOf):
        return any(_matches(value, s) for s in spec.specs)
    if isinstance(spec, tuple):
        return value in spec
    if isinstance(spec, list):
        return isinstance(value, list) and all(_matches(v, spec[0]) for v in value)
    if spec is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, spec)


def _validate(data: dict, schema: dict, where: str, complete: bool = True) -> None:
    """Every key known and well-typed; with `complete`, every section present (a model TOML
    over a local model directory may hold only the keys it overrides)."""
    for section, body in data.items():
        if section not in schema:
            raise ConfigError(f"{where}: unknown section [{section}]; "
                              f"fix: use one of {', '.join('[' + s + ']' for s in schema)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: [{section}] must be a table; fix: write it as [{section}]")
        for key, value in body.items():
            spec = schema[section].get(key)
            if spec is None:
                raise ConfigError(f"{where}: unknown key {section}.{key}; "
                                  f"fix: remove it or use one of {', '.join(schema[section])}")
            if not _matches(value, spec):
                raise ConfigError(f"{where}: {section}.{key} = {value!r} is not "
                                  f"{_type_name(spec)}; fix: set it to {_type_name(spec)}")
    for section in schema if complete else ():
        if section not in data and section not in OPTIONAL_SECTIONS:
            raise ConfigError(f"{where}: missing section [{section}]; fix: add it "
                              f"(see configs/models/tiny.toml for an example)")


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{_rel(path)}: no such config; fix: pick one of "
                          f"{', '.join(p.stem for p in sorted(path.parent.glob('*.toml')))}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{_rel(path)}: not valid TOML ({e}); fix: correct the syntax") from None


def _extended(model_file: Path, seen: tuple = ()) -> dict:
    """A model TOML, over the one its model.extends names (recursively), key by key."""
    data = _read_toml(model_file)
    base = data.get("model", {}).get("extends")
    if base is None:
        return data
    _validate(data, MODEL_SCHEMA, _rel(model_file), complete=False)
    base_file = model_file.parent / f"{base}.toml"
    if base_file in seen or base_file == model_file:
        raise ConfigError(f"{_rel(model_file)}: model.extends = {base!r} extends itself; fix: "
                          f"name a model that does not extend this one")
    if not base_file.is_file():
        raise ConfigError(f"{_rel(model_file)}: model.extends = {base!r}: no such config; fix: "
                          f"name one of {', '.join(p.stem for p in sorted(model_file.parent.glob('*.toml')))}")
    merged = _extended(base_file, (*seen, model_file))
    for section, body in data.items():
        merged.setdefault(section, {}).update(body)
    merged["model"].pop("extends")
    return merged


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Config:
    """A validated model + target pair, the only place stages read settings from."""

    model_name: str
    target_name: str
    model: dict       # sections of configs/models/<model>.toml
    target: dict      # sections of configs/targets/<target>.toml
    loras: tuple = ()  # stages.runtime.lora.Lora of `lora=FILE[:SCALE],...`, merged in order

    @property
    def pretrained_path(self) -> Path | None:
        path = self.model["model"].get("path")
        return Path(path) if path else None

    @property
    def vae_factor(self) -> int:
        """Image pixels per latent, along each side."""
        return 2 ** (len(self.model["vae"]["block_out_channels"]) - 1)

    def latent_size(self) -> int:
        return self.model["model"]["image_size"] // self.vae_factor

    @property
    def size_step(self) -> int:
        """What an image side must be a multiple of: the VAE's factor times the UNet's
        downsampling (each down block but the last halves the latents): 64 for SD 1.x."""
        return self.vae_factor * 2 ** (len(self.model["unet"]["block_out_channels"]) - 1)

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """Every image size the build serves, (width, height): the default first."""
        default = (self.model["model"]["image_size"],) * 2
        extra = [parse_size(s) for s in self.model["model"].get("sizes", ())]
        return (default, *[s for s in dict.fromkeys(extra) if s != default])

    def input_specs(self, variant: str) -> dict[str, tuple[tuple[int, ...], str]]:
        """Name -> (shape, dtype) of each graph input: the export boundary of a component
        variant, at its size (config.variant_size; the default size otherwise)."""
        m = self.model
        component = split_variant(variant)[0]
        width, height = variant_size(variant) or self.sizes[0]
        batch = m["model"]["guidance_batch"]
        seq = m["text_encoder"]["max_position_embeddings"]
        lat_h, lat_w = height // self.vae_factor, width // self.vae_factor
        ch = m["vae"]["latent_channels"]
        if component == "text_encoder":
            return {"input_ids": ((batch, seq), "int32")}
        if component == "unet":
            return {"sample": ((batch, m["unet"]["in_channels"], lat_h, lat_w), "float32"),
                    "timestep": ((), "float32"),
                    "encoder_hidden_states": ((batch, seq, m["unet"]["cross_attention_dim"]),
                                              "float32")}
        if component == "vae_decoder":
            return {"latents": ((1, ch, lat_h, lat_w), "float32")}
        if component == "vae_encoder":
            return {"image": ((1, m["vae"]["in_channels"], height, width), "float32")}
        raise KeyError(component)

    @property
    def variants(self) -> tuple[str, ...]:
        """Every component at every precision of the target, float32 first, then the feature
        variants, then the same for each extra size (its UNet and VAE): the subtasks."""
        t = self.target["target"]
        kinds = ([(p, ()) for p in t["precisions"]]
                 + [("float16", (f,)) for f in t.get("features", ())])
        return tuple(variant_name(c, p, f, size) for size in (None, *self.sizes[1:])
                     for p, f in kinds for c in (COMPONENTS if size is None else SIZED))

    def arch(self, component: str) -> dict:
        """The architecture section that builds a component's torch module."""
        return dict(self.model[{"text_encoder": "text_encoder", "unet": "unet",
                                "vae_decoder": "vae", "vae_encoder": "vae"}[component]])


def _check_defaults(mdata: dict, where: str) -> None:
    """[defaults] within the contract's ranges, a sampler the build records, and no guidance
    scale above 1 for a guidance-free model (guidance_batch = 1)."""
    from stages.runtime import contract
    from stages.runtime.samplers import SCHEDULERS

    defaults = mdata.get("defaults", {})
    for key, option in (("steps", contract.STEPS), ("guidance", contract.GUIDANCE)):
        if key in defaults and not option["min"] <= defaults[key] <= option["max"]:
            raise ConfigError(f"{where}: defaults.{key} = {defaults[key]!r} is outside "
                              f"{option['min']:g}..{option['max']:g}; fix: set it within")
    if defaults.get("sampler", contract.DEFAULT_SAMPLER) not in SCHEDULERS:
        raise ConfigError(f"{where}: defaults.sampler = {defaults['sampler']!r} is not a sampler "
                          f"the build records; fix: use one of {', '.join(SCHEDULERS)}")
    if mdata["model"]["guidance_batch"] == 1 and defaults.get("guidance", 0.0) > 1:
        raise ConfigError(f"{where}: defaults.guidance = {defaults['guidance']!r} but "
                          f"model.guidance_batch = 1 runs without guidance; fix: set "
                          f"defaults.guidance = 0.0 (or guidance_batch = 2)")


def _check_sizes(mdata: dict, where: str) -> None:
    """model.sizes written WIDTHxHEIGHT, each side a multiple of the model's size step."""
    probe = Config("", "", mdata, {})
    step = probe.size_step
    if mdata["model"]["image_size"] % step:
        raise ConfigError(f"{where}: model.image_size = {mdata['model']['image_size']} is not a "
                          f"multiple of {step} (the VAE's and the UNet's downsampling); fix: "
                          f"round it to a multiple of {step}")
    for text in mdata["model"].get("sizes", ()):
        size = parse_size(text)
        if size is None or not all(size):
            raise ConfigError(f"{where}: model.sizes has {text!r}, not WIDTHxHEIGHT; fix: write "
                              f"it as \"768x512\"")
        if size[0] % step or size[1] % step:
            raise ConfigError(f"{where}: model.sizes has {text!r}, whose sides are not multiples "
                              f"of {step} (the VAE's and the UNet's downsampling); fix: round "
                              f"them to multiples of {step}")


def load(model: str | None = None, target: str = DEFAULT_TARGET, path: str | None = None,
         lora: str | None = None) -> Config:
    """The model + target config; ConfigError names what is wrong.

    Without a local model: configs/models/<model>.toml (default DEFAULT_MODEL), complete. With one
    (`path`, or a TOML whose model.path it names with init = "pretrained"): the directory's own
    configs (stages/engine/model_dir.py), the TOML's keys over them when there is one; the model
    is named after the directory unless `model` names it. `lora`: FILE[:SCALE],... to merge."""
    target_file = CONFIGS / "targets" / f"{target}.toml"
    tdata = _read_toml(target_file)
    _validate(tdata, TARGET_SCHEMA, _rel(target_file))
    model_file = CONFIGS / "models" / f"{model or DEFAULT_MODEL}.toml"
    toml = None
    if not path or (model and model_file.is_file()):
        toml = _extended(model_file)
        if not path and toml.get("model", {}).get("init") == "pretrained":
            path = toml["model"].get("path")
            if not path:
                raise ConfigError(f"{_rel(model_file)}: model.init = 'pretrained' needs "
                                  f"model.path; fix: set path = \"/dir/of/diffusers/model\" or "
                                  f"pass path=... to doit")
            path = str(ROOT / path)   # a relative path is the checkout's (configs/models/shapes)
        _validate(toml, MODEL_SCHEMA, _rel(model_file), complete=not path)
    try:
        if path:
            mdata = model_dir.read(Path(path))
            name = model or model_dir.model_name(Path(path))
            for section, body in (toml or {}).items():
                mdata.setdefault(section, {}).update({k: v for k, v in body.items()
                                       if (section, k) not in (("model", "init"),
                                                               ("model", "path"))})
            where = _rel(model_file) if toml else str(path)
            model_dir.check_supported(mdata, where)
            if "image_size" not in mdata["model"]:
                mdata["model"]["image_size"] = model_dir.image_size(mdata, where)
        else:
            mdata, name, where = toml, model or DEFAULT_MODEL, _rel(model_file)
            model_dir.check_supported(mdata, where)
    except model_dir.ModelDirError as e:
        raise ConfigError(str(e)) from None
    required = {"model": ("init", "seed", "image_size", "guidance_batch")}
    for section, keys in required.items():
        for key in keys:
            if key not in mdata[section]:
                raise ConfigError(f"{_rel(model_file)}: missing key {section}.{key}; fix: add it "
                                  f"(see configs/models/tiny.toml)")
    _check_defaults(mdata, _rel(model_file) if toml else str(path))
    _check_sizes(mdata, _rel(model_file) if toml else str(path))
    for key in ("tvm", "library", "precisions", "shard_mb"):
        if key not in tdata["target"]:
            raise ConfigError(f"{_rel(target_file)}: missing key target.{key}; fix: add it "
                              f"(see configs/targets/llvm.toml)")
    precisions = tdata["target"]["precisions"]
    if not precisions or precisions[0] != "float32" or len(set(precisions)) != len(precisions):
        raise ConfigError(f"{_rel(target_file)}: target.precisions = {precisions!r}; fix: list "
                          f"\"float32\" first (the reference), then \"float16\" if wanted")
    if tdata["target"].get("features") and "float16" not in precisions:
        raise ConfigError(f"{_rel(target_file)}: target.features needs \"float16\" in "
                          f"target.precisions (feature variants are float16); fix: add it or "
                          f"drop target.features")
    tvm_target = tdata["target"]["tvm"]
    if tvm_target.get("kind") == "llvm" and not {"mcpu", "mtriple"} & tvm_target.keys():
        from stages.engine import host_cpu   # this machine's instruction set, in every key

        if level := host_cpu.mcpu():
            tvm_target["mcpu"] = level
    tune = tdata.get("tune", {})
    if "rpc_tracker" in tune:
        host, _, port = tune["rpc_tracker"].rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{_rel(target_file)}: tune.rpc_tracker = {tune['rpc_tracker']!r} "
                              f"is not host:port; fix: write it as \"127.0.0.1:9190\"")
        if "rpc_key" not in tune:
            raise ConfigError(f"{_rel(target_file)}: tune.rpc_tracker needs tune.rpc_key; fix: "
                              f"set it to the key the RPC servers registered with")
    loras = ()
    if lora:
        from stages.runtime import lora as lora_files

        try:
            loras = lora_files.parse(lora)
            for item in loras:
                lora_files.components_of(item.path)   # a file of neither layout: said now
        except lora_files.LoraError as e:
            raise ConfigError(str(e)) from None
    return Config(name, target, mdata, tdata, loras)
