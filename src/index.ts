/**
 * marginlab's public API: re-exports only, the names a user of the library needs (heads, head steps,
 * backbones, data, train, evaluation, tracking, notebook helpers). Internals (kernels, layers, readers'
 * parts, batching, hashing, the statistics under verification and the norm analysis, the figure
 * renderer's parts) stay reachable from their own modules. Importing it loads the native
 * TensorFlow backend (src/backend.ts) and fails with the fix if none loads.
 */
export type { BackendInfo } from "./backend";
export { backendInfo, tf } from "./backend";

// --- losses (src/losses/) ---
export { ArcFace, type ArcFaceFallback, type ArcFaceOptions, type MarginGradient } from "./losses/arcface";
export { CenterLoss, type CenterLossOptions, type CenterUpdate } from "./losses/center-loss";
export { CombinedMargin, type CombinedMarginOptions } from "./losses/combined-margin";
export { CosFace, type CosFaceOptions } from "./losses/cosface";
export { createHead, HEADS, type HeadSpec, type HeadType } from "./losses/create";
export type { CommonHeadOptions } from "./losses/cosine-head";
export { type ExclusiveForm, type ExclusiveOptions, exclusiveRegularization } from "./losses/exclusive";
export type { CosineHead, Head, HeadOptions } from "./losses/head";
export { L2Softmax, type L2SoftmaxOptions } from "./losses/l2-softmax";
export type { CosineMargin } from "./losses/margin-kernel";
export { NormFace, type NormFaceOptions } from "./losses/normface";
export {
  PartialFC,
  type PartialFCOptimizerOptions,
  type PartialFCOptions,
  type PartialFCSemantics,
} from "./losses/partial-fc";
export { FusedHeadStep, type FusedHeadStepOptions } from "./losses/fused-step";
export { alphaLow, cosFaceScaleBound } from "./losses/scale";
export { Softmax, type SoftmaxOptions } from "./losses/softmax";
export { CAFFE_LAMBDA, type LambdaSchedule, lambdaAt, SphereFace, type SphereFaceOptions } from "./losses/sphereface";
export { type CleaningResult, SubCenterArcFace, type SubCenterArcFaceOptions } from "./losses/subcenter-arcface";
export { LossConfigError, NonFiniteLossError } from "./losses/validate";
export { ConfigError } from "./validate";
export { type LossWarning, type LossWarningListener, onLossWarning } from "./losses/warnings";

// --- tracking (src/tracking/) ---
export type { PlotlyFigure } from "./plots/html";
export { closeFigureRenderer } from "./plots/html";
export type { Experiment, Metric, MlflowRun, RunInfo, RunStatus } from "./tracking/client";
export { MlflowClient } from "./tracking/client";
export { trackingClient } from "./tracking/connect";
export { ensureEmbeddedServer, stopEmbeddedServer } from "./tracking/embedded";
export { MlflowHttpError, MlflowNetworkError } from "./tracking/http";
export type { EndOptions, FigureResult, RunEndResult, StartRunOptions, TableRows } from "./tracking/run";
export { Run, startRun, withRun } from "./tracking/run";
export { JournalError } from "./tracking/journal";
export type { TrackingOfflineEvent } from "./tracking/reachability";
export { onTrackingOffline } from "./tracking/reachability";
export { RejectedItemError, RunUnavailableError } from "./tracking/sender";
export { startMlflowServer } from "./tracking/server";
export type { ImageSource } from "./tracking/images";
export type { SystemMetricsOptions } from "./tracking/system-metrics";
export type { SweepOptions, SweepResult } from "./tracking/sweep";
export { runSweep } from "./tracking/sweep";
export { syncJournals } from "./tracking/sync";

// --- data, backbones, training, evaluation (src/data, src/backbones, src/train, src/eval) ---
export type { Backbone } from "./backbones/backbone";
export { BACKBONES, type BackboneName, type BackboneOptions, createBackbone } from "./backbones/index";
export { type IResNetOptions, iresnet } from "./backbones/iresnet";
export { type LeNetOptions, lenetPP } from "./backbones/lenet";
export { type MobileFaceNetOptions, mobileFaceNet } from "./backbones/mobilefacenet";
export { type Dataset, indicesOfClasses, subset } from "./data/dataset";
export { type ImageFolderDataset, type ImageFolderOptions, imageFolder, type SkippedImage } from "./data/image-folder";
export { DATA_TYPES, type DataSpec, openDataset } from "./data/index";
export { type MnistOptions, mnistDigits } from "./data/mnist-digits";
export { type AugmentOptions, type Batch, BatchStream, evalBatches, type PipelineOptions } from "./data/pipeline";
export { type RecordIODataset, RecordIOError, type RecordIOOptions, recordIODataset } from "./data/recordio";
export {
  DEGRADATIONS,
  type Degradation,
  type LabelNoise,
  type LongTail,
  type SyntheticDataset,
  type SyntheticOptions,
  syntheticFaces,
} from "./data/synthetic";
export { loadVerificationBin, type VerificationBinOptions, type VerificationSet } from "./data/verification-bin";
export { type Embeddings, type EmbedOptions, embedDataset } from "./eval/embed";
export { type NormQualityReport, normQualityAnalysis } from "./eval/norms";
export {
  type AngleStats,
  angleStatistics,
  type CentreStats,
  centreSeparation,
  featureCentres,
} from "./eval/separability";
export { type CollapseReason, detectCollapse } from "./eval/collapse";
export { meanInterval, pairedTTest, verdictOf, wilcoxonSignedRank } from "./eval/stats";
export { type RocCurve, type VerificationResult, verifyAllPairs, verifyPairs } from "./eval/verification";
export { type BackboneVerification, verifyDataset, verifySet } from "./eval/verify";
export { evaluateEvery, type MetricsTracker, notebookProgress, progressBar, trackerCallback } from "./train/callbacks";
export { AutodiffHeadStep, type AutodiffHeadStepOptions } from "./train/autodiff-step";
export { CheckpointError, type CheckpointState, readCheckpoint, resolveCheckpoint } from "./train/checkpoint";
export { type ConvergenceReport, convergence } from "./train/convergence";
export type { HeadStep, HeadStepKind, HeadStepResult, HeadStepState, PreparedHeadStep } from "./train/head-step";
export { OPTIMIZERS, type OptimizerConfig } from "./train/optimizers";
export { SCHEDULES, type Schedule } from "./train/schedules";
export {
  checkpointEvery,
  type HeadStepChoice,
  type Regularizer,
  type StepMetrics,
  type TrainCallback,
  type TrainConfig,
  type TrainContext,
  TrainingError,
  type TrainResult,
  type TrainWarning,
  train,
} from "./train/trainer";

// --- experiments and notebooks (src/notebook/display.ts; ablations live in experiments/) ---
export { LiveProgress, showFigure, showHtml, showMarkdown, showTable } from "./notebook/display";
export { type ProgressView, TextProgress } from "./progress";
export type { CompareOptions, CompareTarget, ComparedRun, Comparison, ConfigSummary } from "./notebook/compare";
export { compareRuns, showComparison } from "./notebook/compare";
