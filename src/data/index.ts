/** Opening a data source from a plain description (CLI, experiments, notebooks). */
import { configError, type Dataset } from "./dataset";
import { type ImageFolderOptions, imageFolder } from "./image-folder";
import { mnistDigits } from "./mnist-digits";
import { recordIODataset } from "./recordio";
import { type SyntheticOptions, syntheticFaces } from "./synthetic";

export type DataSpec =
  | ({ type: "synthetic" } & SyntheticOptions)
  | { type: "mnist"; perClass?: number; offset?: number }
  | { type: "recordio"; path: string; size?: [number, number]; channels?: 1 | 3; onCorrupt?: "throw" | "skip" }
  | ({ type: "folder" } & ImageFolderOptions);

export const DATA_TYPES = ["synthetic", "mnist", "recordio", "folder"] as const;

export async function openDataset(spec: DataSpec): Promise<Dataset> {
  switch (spec?.type) {
    case "synthetic":
      return syntheticFaces(spec);
    case "mnist":
      return mnistDigits(spec);
    case "recordio":
      return recordIODataset(spec);
    case "folder":
      return imageFolder(spec);
    default:
      throw configError("data.type", (spec as { type?: unknown })?.type, `allowed are ${DATA_TYPES.join(", ")}`);
  }
}
