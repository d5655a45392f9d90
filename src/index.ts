/**
 * marginlab's public API: re-exports only. Importing it loads the native TensorFlow backend
 * (src/backend.ts) and fails with the fix if none loads.
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
export {
  type ExclusiveForm,
  type ExclusiveOptions,
  exclusiveDense,
  exclusiveRegularization,
  exclusiveStochastic,
  exclusiveTiled,
  nearestOtherRows,
} from "./losses/exclusive";
export type { CosineHead, Head, HeadOptions } from "./losses/head";
export { L2Softmax, type L2SoftmaxOptions } from "./losses/l2-softmax";
export type { CosineMargin } from "./losses/margin-kernel";
export { NormFace, type NormFaceOptions } from "./losses/normface";
export {
  PartialFC,
  type PartialFCGradients,
  type PartialFCOptimizerOptions,
  type PartialFCOptions,
  type PartialFCSemantics,
  type PartialFCStepResult,
} from "./losses/partial-fc";
export { type ActiveSet, numSampled, selectActive, selectWithScores } from "./losses/partial-fc-sampling";
export { FusedHeadStep, type FusedHeadStepOptions } from "./losses/fused-step";
export { alphaLow, cosFaceScaleBound, DEFAULT_TARGET_PROBABILITY, scaleBound } from "./losses/scale";
export { Softmax, type SoftmaxOptions } from "./losses/softmax";
export { CAFFE_LAMBDA, type LambdaSchedule, lambdaAt, SphereFace, type SphereFaceOptions } from "./losses/sphereface";
export { type CleaningResult, SubCenterArcFace, type SubCenterArcFaceOptions } from "./losses/subcenter-arcface";
export { LossConfigError, NonFiniteLossError } from "./losses/validate";
export { ConfigError } from "./validate";
export { type LossWarning, type LossWarningListener, onLossWarning } from "./losses/warnings";

// --- tracking (src/tracking/) ---
export type { PlotlyFigure } from "./plots/html";
export { closeFigureRenderer, figureHtml, figurePng } from "./plots/html";
export type { BatchPayload, Experiment, Metric, MlflowRun, RunInfo, RunStatus } from "./tracking/client";
export { MlflowClient } from "./tracking/client";
export type { TrackingConfig } from "./tracking/config";
export { trackingConfigFromEnv } from "./tracking/config";
export { trackingClient } from "./tracking/connect";
export { ensureEmbeddedServer, stopEmbeddedServer } from "./tracking/embedded";
export { MlflowHttpError, MlflowNetworkError } from "./tracking/http";
export { configHash, flattenConfig } from "./tracking/params";
export type { EndOptions, FigureResult, RunEndResult, StartRunOptions, TableRows } from "./tracking/run";
export { Run, startRun, withRun } from "./tracking/run";
export { JournalError } from "./tracking/journal";
export type { TrackingOfflineEvent } from "./tracking/reachability";
export { onTrackingOffline } from "./tracking/reachability";
export { RejectedItemError, RunUnavailableError } from "./tracking/sender";
export { startMlflowServer } from "./tracking/server";
export type { ImageSource } from "./tracking/images";
export type { SystemMetricsOptions } from "./tracking/system-metrics";
export { SystemMetricsMonitor } from "./tracking/system-metrics";
export type { SweepOptions, SweepResult } from "./tracking/sweep";
export { runSweep } from "./tracking/sweep";
export { syncJournals } from "./tracking/sync";

// --- data, backbones, training, evaluation (src/data, src/backbones, src/train, src/eval) ---
export { type Backbone, LayersBackbone } from "./backbones/backbone";
export { BatchNorm, type BatchNormOptions } from "./backbones/batchnorm";
export { Conv2D, type ConvOptions } from "./backbones/conv";
export { BACKBONES, type BackboneName, type BackboneOptions, createBackbone } from "./backbones/index";
export { IRESNET_LAYERS, type IResNetOptions, iresnet, iresnetSmall } from "./backbones/iresnet";
export { type LeNetOptions, lenetPP } from "./backbones/lenet";
export { type MobileFaceNetOptions, mobileFaceNet, mobileFaceNetSmall } from "./backbones/mobilefacenet";
export { PReLU } from "./backbones/prelu";
export { type Dataset, type ImageSample, indicesOfClasses, subset } from "./data/dataset";
export { decodeImage, decodeImageAt, encodeImage, undecodableReason } from "./data/decode";
export { type ImageFolderDataset, type ImageFolderOptions, imageFolder, type SkippedImage } from "./data/image-folder";
export { DATA_TYPES, type DataSpec, openDataset } from "./data/index";
export { type MnistOptions, mnistDigits } from "./data/mnist-digits";
export { type NumpyArray, PickleError, unpickle } from "./data/pickle";
export {
  type AugmentOptions,
  type Batch,
  BatchStream,
  type DataPosition,
  evalBatches,
  type PipelineOptions,
} from "./data/pipeline";
export {
  IndexedRecordIO,
  type IRHeader,
  RECORDIO_MAGIC,
  type RecordIODataset,
  RecordIOError,
  type RecordIOOptions,
  recordIODataset,
  unpackRecord,
} from "./data/recordio";
export { hashInts, permutation, Rng } from "./data/rng";
export {
  DEGRADATIONS,
  type Degradation,
  faceSvg,
  identityParams,
  type LabelNoise,
  type LongTail,
  type SyntheticDataset,
  type SyntheticOptions,
  syntheticFaces,
  syntheticHash,
} from "./data/synthetic";
export { loadVerificationBin, type VerificationBinOptions, type VerificationSet } from "./data/verification-bin";
export { type Embeddings, type EmbedOptions, embedDataset } from "./eval/embed";
export { l2norms, type NormQualityReport, normQualityAnalysis, normTertiles, pearson, spearman } from "./eval/norms";
export {
  type AngleStats,
  angleStatistics,
  type CentreStats,
  centreSeparation,
  featureCentres,
  toRows,
} from "./eval/separability";
export {
  evaluatePairs,
  kfoldAccuracy,
  makePairs,
  type RocCurve,
  rocCurve,
  tarAtFar,
  type VerificationResult,
  verifyPairs,
} from "./eval/verification";
export { type BackboneVerification, verifyDataset, verifySet } from "./eval/verify";
export {
  evaluateEvery,
  type MetricsTracker,
  metricsRecord,
  notebookProgress,
  progressBar,
  trackerCallback,
} from "./train/callbacks";
export { AutodiffHeadStep, type AutodiffHeadStepOptions } from "./train/autodiff-step";
export { CheckpointError, type CheckpointState, readCheckpoint, resolveCheckpoint } from "./train/checkpoint";
export { type ConvergenceReport, convergence } from "./train/convergence";
export type { HeadStep, HeadStepKind, HeadStepResult, HeadStepState, PreparedHeadStep } from "./train/head-step";
export { OPTIMIZERS, type OptimizerConfig } from "./train/optimizers";
export { learningRate, SCHEDULES, type Schedule } from "./train/schedules";
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

// --- experiments and notebooks (src/notebook/display.ts, src/plots/inline.ts; ablations live in experiments/) ---
export { LiveProgress, showFigure, showHtml, showMarkdown, showTable, tableHtml } from "./notebook/display";
export { formatDuration, type ProgressView, progressHtml, progressText, TextProgress } from "./progress";
export type { CompareOptions, CompareTarget, ComparedRun, Comparison, ConfigSummary } from "./notebook/compare";
export { compareRuns, showComparison } from "./notebook/compare";
export { inlineFigureHtml, plotlyLoaderScript } from "./plots/inline";
