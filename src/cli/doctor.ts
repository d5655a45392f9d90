import { doctorPassed, formatDoctorTable, runDoctor } from "../doctor";

export const summary = "check the backend, Python environment, JupyterLab, kernel spec and MLflow";

export async function run(args: string[]): Promise<number> {
  const json = args.includes("--json");
  const results = await runDoctor();
  if (json) console.log(JSON.stringify(results, null, 2));
  else console.log(formatDoctorTable(results));
  const passed = doctorPassed(results);
  if (!json)
    console.log(passed ? "\nall required checks passed" : "\nsome required checks failed: see the fixes above");
  return passed ? 0 : 1;
}
