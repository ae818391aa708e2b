"""One validated configuration for every stage, loaded from YAML.

The keys are QMD's original `configs/sft.yaml` / `configs/grpo.yaml` keys (so those files load
unchanged), plus sections for the stages QMD ran by hand: eval, export, publish. Unknown keys
and bad values are errors naming the key path and the file, because a typo in a training config
silently falling back to a default costs a GPU run.

Config files are input a user may get from anywhere, so loading is bounded: a size cap, a cap on
YAML aliases (an "alias bomb" expands to gigabytes) and on nesting depth, no `.inf`/`.nan`
numbers (a learning rate of infinity trains NaN weights), sizes capped far above any real run,
and error lines that quote at most a short prefix of a bad value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qmd_ft.errors import UserError
from qmd_ft.resources import locate, locate_glob

DEFAULT_REPO = "tobil/qmd-query-expansion-1.7B"


MAX_CONFIG_BYTES = 1_000_000
MAX_VALUES = 100_000
MAX_DEPTH = 32
MAX_SHOWN = 60
"""Characters of a bad value quoted in an error line."""
SIZE = 1 << 20
"""Upper bound of batch sizes, lengths and ranks: far above any real run, far below overflow."""
STEPS = 1 << 40
SEED = (1 << 32) - 1
"""numpy's seed range, the narrowest of the RNGs a seed reaches."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deep enough to blow the stack."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitError(
                f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _LimitError(yaml.YAMLError):
    def __init__(self, problem: str, mark: Any):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds once its aliases are expanded (memoized per node)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, seen: frozenset[int]) -> int:
        if id(node) in seen:
            raise _LimitError("a YAML alias refers to itself", node.start_mark)
        if id(node) not in sizes:
            children = node.value if isinstance(node.value, list) else []
            flat = [c for pair in children for c in (pair if isinstance(pair, tuple) else [pair])]
            sizes[id(node)] = 1 + sum(size(c, seen | {id(node)}) for c in flat)
        return sizes[id(node)]

    return size(root, frozenset())


def _safe_yaml(text: str) -> Any:
    """`yaml.safe_load` within the caps; raises yaml.YAMLError."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_VALUES:
            raise _LimitError(
                f"more than {MAX_VALUES} values once its aliases (*name) are expanded",
                node.start_mark,
            )
        try:
            return loader.construct_document(node)
        except (ValueError, OverflowError) as e:
            raise _LimitError(f"a value cannot be read: {shorten(str(e))}", None) from e
    finally:
        loader.dispose()


def shorten(value: Any) -> str:
    """`repr(value)`, cut to a short prefix: an error line never echoes a huge value."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}… ({len(text)} chars)"


class Section(BaseModel):
    """Strict base: unknown keys are errors, values are checked on assignment too, and
    infinite or NaN numbers are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(Section):
    """Which weights go in and where the trained ones go."""

    base: str = "Qwen/Qwen3-1.7B"
    sft: str | None = Field(
        default=None,
        description="SFT result (adapter or merged dir) that GRPO starts from; merged first.",
    )
    adapters: list[str] = Field(default_factory=list, description="Adapters stacked on base.")
    output: str = "outputs/run"


class DatasetConfig(Section):
    """Where the examples come from and how they are split.

    `text_field` and `split` are QMD's original keys (configs/sft.yaml sets them), kept so
    that file loads unchanged. Each accepts only the value describing what qmd-ft does, so a
    config asking for anything else is refused instead of being silently trained otherwise.
    """

    name: str = Field(
        default="data/train",
        description="Prepared dataset directory (qmd-ft data prepare --out DIR); train prepares "
        "it from data_glob when missing. Not a Hub id: import those with qmd-ft data import-hf.",
    )
    data_glob: str = "data/*.jsonl"
    text_field: str = Field(
        default="text",
        description="QMD compatibility key, only 'text': training reads the prepared rows' "
        "prompt and completion, whose concatenation is their `text` field.",
    )
    prompt_field: str = "messages"
    split: str = Field(
        default="train",
        description="QMD compatibility key, only 'train': training reads the prepared dir's "
        "train.jsonl (val.jsonl gives the eval loss).",
    )
    eval_split: float = Field(default=0.1, ge=0.0, lt=1.0)
    max_samples: int | None = Field(default=None, gt=0)
    seed: int = Field(default=42, ge=0, le=SEED)
    evals: str | None = Field(
        default="evals/queries.txt",
        description="Eval queries kept out of the training split; null: no eval set.",
    )

    @field_validator("text_field")
    @classmethod
    def _text_field(cls, v: str) -> str:
        if v != "text":
            raise ValueError(
                "QMD compatibility key: qmd-ft trains on the prepared prompt/completion pair "
                "(its `text` field); only 'text' is accepted"
            )
        return v

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        if v != "train":
            raise ValueError(
                "QMD compatibility key: training reads the prepared dir's train.jsonl; only "
                "'train' is accepted (choose the data with dataset.name / data_glob)"
            )
        return v


class TrainingConfig(Section):
    """Optimizer and schedule; the same keys drive both backends."""

    epochs: float = Field(default=1, gt=0, le=1e6)
    batch_size: int = Field(default=4, gt=0, le=SIZE)
    gradient_accumulation_steps: int = Field(default=1, gt=0, le=SIZE)
    learning_rate: float = Field(default=2e-4, gt=0)
    max_length: int = Field(default=512, gt=0, le=SIZE)
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0, le=STEPS)
    weight_decay: float = Field(default=0.0, ge=0.0)
    seed: int = Field(default=42, ge=0, le=SEED)
    logging_steps: int = Field(default=10, gt=0, le=STEPS)
    save_steps: int = Field(default=100, gt=0, le=STEPS)
    eval_steps: int | None = Field(default=None, gt=0, le=STEPS)
    gradient_checkpointing: bool = False
    # Speed switches (cuda backend; mlx ignores them). Off by default: the plain recipe.
    padding_free: bool = Field(default=False, description="One row per batch, no pad tokens.")
    tokens_per_batch: int | Literal["auto"] | None = Field(
        default=None,
        description="Size micro-batches by tokens; micro-batch x accumulation stays "
        "batch_size x gradient_accumulation_steps ('auto': the GPU memory left after the model, "
        "its gradients and optimizer states are placed).",
    )
    use_liger_kernel: bool = False
    torch_compile: bool = False
    fast_generation: bool = Field(default=False, description="GRPO rollouts via static cache.")
    compile_generation: bool = False
    use_vllm: bool = False

    @field_validator("tokens_per_batch")
    @classmethod
    def _positive_tokens(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and not 0 < v <= STEPS:
            raise ValueError(f"must be > 0 and <= {STEPS}, or 'auto'")
        return v


class LoraConfig(Section):
    """LoRA adapter shape; leaving the whole section out means full fine-tuning."""

    rank: int = Field(default=16, gt=0, le=SIZE)
    alpha: float = Field(default=32, gt=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        min_length=1,
    )


class GrpoConfig(Section):
    """GRPO settings; names follow TRL's GRPOConfig so the mapping is one-to-one."""

    num_generations: int = Field(default=4, ge=2, le=SIZE)
    max_completion_length: int = Field(default=200, gt=0, le=SIZE)
    max_prompt_length: int = Field(default=128, gt=0, le=SIZE)
    beta: float = Field(default=0.04, description="KL penalty to the SFT model; must be > 0.")
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1.0)
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    epsilon: float = Field(default=0.2, gt=0)
    scale_rewards: Literal["group", "batch", "none"] = "group"
    num_iterations: int = Field(default=1, gt=0, le=SIZE)

    @field_validator("beta")
    @classmethod
    def _beta_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(
                "must be > 0: without the KL penalty GRPO drifts away from the SFT model "
                "(QMD's beta=0 run collapsed); use e.g. 0.04"
            )
        return v


class EvalConfig(Section):
    """How eval generates; greedy by default so scores are reproducible."""

    queries: str = "evals/queries.txt"
    retrieval_dir: str = Field(
        default="evals/retrieval",
        description="The judged corpus of `eval --retrieval` and the gate: notes/, queries.jsonl.",
    )
    max_new_tokens: int = Field(default=200, gt=0, le=SIZE)
    batch_size: int = Field(default=16, gt=0, le=SIZE)
    temperature: float = Field(default=0.0, ge=0.0)
    top_k: int = Field(default=0, ge=0, description="Sample from the k likeliest (0: off).")
    top_p: float = Field(default=1.0, gt=0, le=1.0)
    seed: int = Field(default=0, ge=0, le=SEED)
    fast_generation: bool = Field(default=False, description="Static KV cache decoder (cuda).")
    compile_generation: bool = False


class ServingConfig(Section):
    """The artifact users run, as QMD runs it: the gate's numbers come from this when enabled.

    QMD loads the quantized GGUF and samples (temperature 0.7, top_k 20, top_p 0.8), so the
    gate scores that file through the gguf backend with those settings, `samples` seeded runs
    per query (seeds `seed`, `seed`+1, ...), and reports their mean and spread beside the
    greedy eval of the merged model.
    """

    enabled: bool = Field(default=False, description="configs/pipeline.yaml: true.")
    quant: Literal["f32", "f16", "bf16", "q8_0", "q4_k_m", "q5_k_m"] = "q4_k_m"
    temperature: float = Field(default=0.7, ge=0.0)
    top_k: int = Field(default=20, ge=0)
    top_p: float = Field(default=0.8, gt=0, le=1.0)
    samples: int = Field(default=3, gt=0)
    seed: int = 0


class ExportConfig(Section):
    """GGUF export targets."""

    quants: list[Literal["f32", "f16", "bf16", "q8_0", "q4_k_m", "q5_k_m"]] = Field(
        default_factory=lambda: ["f16", "q8_0", "q4_k_m", "q5_k_m"]
    )
    out: str = "outputs/gguf"
    verify: bool = True


RetrievalMetric = Literal["recall@5", "recall@10", "mrr", "ndcg@10"]


class RetrievalGateConfig(Section):
    """The gate's search rules (`qmd_ft.gate`): expansions must help search, and not regress.

    Floors are on the paired bootstrap interval's lower bound of the per-query metric delta
    (metric scale 0-1) on `evals/retrieval/`.
    """

    required: bool = Field(
        default=False,
        description="Refuse a release without retrieval results (configs/pipeline.yaml: true).",
    )
    vs_raw: dict[RetrievalMetric, float] = Field(
        default_factory=lambda: {"ndcg@10": 0.0},
        description="Model vs raw query: CI lower bound must be > the floor, per metric.",
    )
    vs_deployed: dict[RetrievalMetric, float] = Field(
        default_factory=lambda: {"ndcg@10": -0.01},
        description="Model vs deployed model: CI lower bound must be >= the floor, per metric.",
    )
    report: list[RetrievalMetric] = Field(
        default_factory=lambda: ["recall@10"], description="Shown beside the gated metrics."
    )


class PublishConfig(Section):
    """Where releases go and what "better" means for the gate."""

    repo: str = DEFAULT_REPO
    gguf_repo: str | None = Field(default=None, description="Defaults to '<repo>-gguf'.")
    registry: str | None = Field(default=None, description="Local registry dir instead of Hub.")
    private: bool = False
    min_delta: float = Field(default=0.0, description="Mean score delta (points) to beat.")
    min_ci_lower: float = Field(default=-0.5, description="Lower 95% CI bound (points).")
    bootstrap_samples: int = Field(default=10_000, gt=0, le=10_000_000)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0, description="Of every gate interval.")
    retrieval: RetrievalGateConfig = Field(default_factory=RetrievalGateConfig)

    @property
    def resolved_gguf_repo(self) -> str:
        """The single GGUF twin of the destination repo."""
        return self.gguf_repo or f"{self.repo}-gguf"


class TrackingConfig(Section):
    """Experiment tracking; `report_to` is passed through to the trainer."""

    project: str = "qmd-query-expansion"
    run_name: str | None = None
    report_to: list[str] = Field(default_factory=list)


PIPELINE_STAGES = (
    "prepare",
    "sft",
    "grpo",
    "merge",
    "gguf",
    "eval",
    "compare",
    "publish",
    "publish_gguf",
)
"""The default order: GGUF is exported before eval, since the gate scores the file users run."""


class PipelineConfig(Section):
    """QMD's release checklist: which stage configs to use and where runs go."""

    sft_config: str = "configs/sft.yaml"
    grpo_config: str = "configs/grpo.yaml"
    out: str = "outputs/pipeline"
    stages: list[str] = Field(default_factory=lambda: list(PIPELINE_STAGES))

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in PIPELINE_STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known: {', '.join(PIPELINE_STAGES)}")
        return v


class Config(Section):
    """Everything one run needs, for every stage."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    lora: LoraConfig | None = Field(
        default=None, description="LoRA adapter; absent means full fine-tuning."
    )
    grpo: GrpoConfig = Field(default_factory=GrpoConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)

    @property
    def full_finetune(self) -> bool:
        """True when the config has no LoRA section (or `lora: null`)."""
        return self.lora is None

    @model_validator(mode="after")
    def _stage_rules(self, info: ValidationInfo) -> Config:
        """The rules of the stage the config is loaded for (`load_config(stage=…)`).

        A config file does not say which stage it drives (an SFT file carries GRPO defaults it
        never uses), so these run only when the loader names the stage.
        """
        context = info.context or {}
        if context.get("stage") == "grpo":
            problem = grpo_batch_problem(self, context.get("processes", 1))
            if problem:
                raise ValueError(problem)
        return self


def grpo_batch_problem(cfg: Config, processes: int = 1) -> str | None:
    """Why GRPO cannot lay out its generation batch (None: it can).

    TRL (and our MLX loop, which follows it) generate `batch_size x gradient_accumulation_steps
    x processes` completions per optimizer step, in whole groups of `num_generations` per
    prompt; `processes` is the DDP world size.
    """
    t, n = cfg.training, cfg.grpo.num_generations
    per_step = t.batch_size * t.gradient_accumulation_steps * processes
    if per_step % n == 0:
        return None
    return (
        f"training.batch_size ({t.batch_size}) x training.gradient_accumulation_steps "
        f"({t.gradient_accumulation_steps}) x processes ({processes}) = {per_step} completions "
        f"per step must be a multiple of grpo.num_generations ({n}): change one of them "
        f"(e.g. training.gradient_accumulation_steps: {_fitting_accumulation(cfg, processes)})"
    )


def _fitting_accumulation(cfg: Config, processes: int) -> int:
    """The smallest gradient_accumulation_steps that makes whole generation groups."""
    per_micro = cfg.training.batch_size * processes
    n = cfg.grpo.num_generations
    return next(k for k in range(1, n + 1) if per_micro * k % n == 0)


def check_grpo_batch(cfg: Config, processes: int = 1) -> int:
    """Completions per optimizer step; UserError when they do not make whole groups.

    The rule `Config` validates for a GRPO stage, for callers that know the world size only
    when they run (a launched DDP process, a backend trainer called directly).
    """
    problem = grpo_batch_problem(cfg, processes)
    if problem:
        raise UserError(problem)
    return cfg.training.batch_size * cfg.training.gradient_accumulation_steps * processes


def _error_line(source: str, err: ValidationError) -> str:
    """One line per pydantic error: `FILE: key.path: what is wrong`.

    A rule over several keys (a model validator) names its keys itself: `FILE: rule`.
    """
    parts = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])[:200]
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if not path:
            parts.append(f"{source}: {msg.removeprefix('Value error, ')}")
            continue
        if e["type"] != "extra_forbidden" and "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {shorten(e['input'])})"
        parts.append(f"{source}: {path}: {msg}")
    return "; ".join(parts)


STAGE_PREFIXES = ("sft", "grpo")
"""The stages a `--set STAGE:key=value` item may name."""


@dataclass(frozen=True)
class Overrides:
    """`--set` items split by reach: `common` for every config a command loads, `staged` for
    one stage's config only."""

    common: list[str] = field(default_factory=list)
    staged: dict[str, list[str]] = field(default_factory=dict)

    def of(self, stage: str) -> list[str]:
        """The items for `stage`'s config: the common ones, then its own (which win)."""
        return [*self.common, *self.staged.get(stage, [])]


def split_overrides(items: Sequence[str] | None, stages: Sequence[str]) -> Overrides:
    """`--set [stage:]key.path=value` items by the config they reach.

    `stages`: the training stages the command loads a config for. A prefix naming another
    stage is an error (it would silently change nothing); a value holding `:` (a hub id, a URL)
    is not a prefix, since the prefix comes before any `=`.
    """
    common: list[str] = []
    staged: dict[str, list[str]] = {stage: [] for stage in stages}
    for item in items or []:
        prefix, sep, rest = item.partition(":")
        if not sep or "=" in prefix:
            common.append(item)
        elif prefix in staged:
            staged[prefix].append(rest)
        elif prefix in STAGE_PREFIXES:
            runs = " and ".join(stages) or "no training stage"
            raise UserError(
                f"--set {shorten(item)}: this command runs no {prefix} stage (it loads: {runs}); "
                f"drop the item or the {prefix}: prefix"
            )
        else:
            raise UserError(
                f"--set {shorten(item)}: unknown stage {prefix!r}; write key.path=value, or "
                f"{' / '.join(f'{s}:key.path=value' for s in STAGE_PREFIXES)}"
            )
    return Overrides(common, staged)


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`key.path=value` strings into a nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {shorten(pair)}: expected key.path=value")
        node = out
        keys = key.strip().split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {shorten(pair)}: {k} is set twice")
        try:
            node[keys[-1]] = _safe_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise UserError(f"--set {shorten(pair)}: invalid YAML value: {problem}") from e
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of `over` into a copy of `base` (override wins, dicts merge)."""
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    stage: str | None = None,
    processes: int = 1,
) -> Config:
    """Defaults, then the YAML file, then `--set` overrides, validated once.

    `stage` ("sft", "grpo"): the stage the config drives, whose own rules are checked too
    (GRPO's generation batch, for `processes` DDP processes). Raises UserError naming the file
    and key path on any problem.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        p = locate(path)
        if not p.is_file():
            raise UserError(f"{source}: config file not found")
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(
                f"{source}: {p.stat().st_size} bytes; a config is at most {MAX_CONFIG_BYTES}"
            )
        try:
            loaded = _safe_yaml(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise UserError(f"{source}{where}: invalid YAML: {getattr(e, 'problem', e)}") from e
        except UnicodeDecodeError as e:
            raise UserError(f"{source}: not UTF-8 text") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{source}: expected a mapping of sections at the top level")
        data = loaded
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    if over:
        data = _merge(data, over)
        source += " (with --set overrides)"
    try:
        context = {"stage": stage, "processes": processes}
        return _with_shipped_defaults(Config.model_validate(data, context=context))
    except ValidationError as e:
        raise UserError(_error_line(source, e)) from e


def _with_shipped_defaults(cfg: Config) -> Config:
    """Point default paths missing from the working directory at the copies qmd-ft ships.

    A user's own `data/`, `evals/` or `configs/` always wins; outside a checkout (an installed
    wheel run from any folder) the embedded defaults are found instead of "not found".
    """
    ds, pipe = cfg.dataset, cfg.pipeline
    ds.data_glob = locate_glob(ds.data_glob)
    if ds.evals is not None:
        ds.evals = str(locate(ds.evals))
    cfg.eval.queries = str(locate(cfg.eval.queries))
    cfg.eval.retrieval_dir = str(locate(cfg.eval.retrieval_dir))
    pipe.sft_config = str(locate(pipe.sft_config))
    pipe.grpo_config = str(locate(pipe.grpo_config))
    return cfg


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML, in section order."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
