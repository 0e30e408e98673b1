// Finds the `unmask` executable: the configured path, else PATH, else the Python interpreter's
// environment, else the workspace's .venv / venv. On failure, a message that says how to fix it.
// No `vscode` import, so the unit tests run in plain Node.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface Found {
  command: string;
  source: string; // where it was found, for the log and the status tooltip
}

export interface Missing {
  error: string;
}

export interface Where {
  serverPath: string; // the unmask.serverPath setting ('' if unset)
  pythonInterpreter?: string; // python.defaultInterpreterPath, when it is a path
  workspaceFolders: string[];
  envPath: string; // process.env.PATH
  windows?: boolean;
}

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export const INSTALL_HINT =
  'Install it into a Python 3.11+ virtual environment (python3 -m venv .venv && .venv/bin/pip install <unmask checkout>), ' +
  'then put that environment\'s bin folder on PATH or set "unmask.serverPath" to its bin/unmask.';

export function findServer(where: Where): Found | Missing {
  const names = where.windows ? ['unmask.exe', 'unmask.cmd', 'unmask'] : ['unmask'];
  const bin = where.windows ? 'Scripts' : 'bin';
  if (where.serverPath.trim() !== '') {
    const p = where.serverPath.trim().replace(/^~(?=$|[\\/])/, os.homedir());
    return executable(p)
      ? { command: p, source: 'unmask.serverPath' }
      : { error: `unmask: "unmask.serverPath" is ${p}, which is not an executable file. ${INSTALL_HINT}` };
  }
  for (const dir of where.envPath.split(path.delimiter).filter(Boolean)) {
    for (const n of names) {
      const p = path.join(dir, n);
      if (executable(p)) {
        return { command: p, source: 'PATH' };
      }
    }
  }
  const interp = where.pythonInterpreter;
  if (interp && (interp.includes('/') || interp.includes('\\'))) {
    for (const n of names) {
      const p = path.join(path.dirname(interp), n);
      if (executable(p)) {
        return { command: p, source: `the Python interpreter's environment (${interp})` };
      }
    }
  }
  for (const folder of where.workspaceFolders) {
    for (const venv of ['.venv', 'venv']) {
      for (const n of names) {
        const p = path.join(folder, venv, bin, n);
        if (executable(p)) {
          return { command: p, source: `the workspace's ${venv}` };
        }
      }
    }
  }
  return {
    error:
      'unmask: cannot find the `unmask` executable (looked on PATH, next to the Python interpreter and in the ' +
      `workspace's .venv). ${INSTALL_HINT}`,
  };
}
