// The extension's settings and what they become: the server's settings (docs/protocol.md) and
// the client's document selector. No `vscode` import, so the unit tests run in plain Node.

export interface Settings {
  enable: boolean;
  languages: string[];
  latencyBudgetMs: number;
  minConfidence: number;
  modelPath: string;
  streamDrafts: boolean;
  serverPath: string;
  nextEdit: boolean;
  nextEditMinConfidence: number;
}

export const DEFAULTS: Settings = {
  enable: true,
  languages: ['*'],
  latencyBudgetMs: 250,
  minConfidence: 0.4,
  modelPath: '',
  streamDrafts: true,
  serverPath: '',
  nextEdit: true,
  nextEditMinConfidence: 0.75,
};

/** Settings from a getter like `vscode.workspace.getConfiguration('unmask').get`. */
export function read(get: <T>(key: string) => T | undefined): Settings {
  const pick = <K extends keyof Settings>(key: K, name: string = key): Settings[K] => {
    const v = get<Settings[K]>(name);
    return v === undefined || v === null ? DEFAULTS[key] : v;
  };
  return {
    enable: pick('enable'),
    languages: pick('languages'),
    latencyBudgetMs: pick('latencyBudgetMs'),
    minConfidence: pick('minConfidence'),
    modelPath: pick('modelPath'),
    streamDrafts: pick('streamDrafts'),
    serverPath: pick('serverPath'),
    nextEdit: pick('nextEdit', 'nextEdit.enable'),
    nextEditMinConfidence: pick('nextEditMinConfidence', 'nextEdit.minConfidence'),
  };
}

/** What the server gets as initializationOptions and on workspace/didChangeConfiguration. */
export function serverSettings(s: Settings): Record<string, unknown> {
  return {
    latencyBudgetMs: s.latencyBudgetMs,
    minConfidence: s.minConfidence,
    modelPath: s.modelPath.trim() === '' ? null : s.modelPath,
    streamDrafts: s.streamDrafts,
    'nextEdit.enabled': s.nextEdit,
    'nextEdit.minConfidence': s.nextEditMinConfidence,
  };
}

export interface DocumentFilter {
  scheme: string;
  language?: string;
}

/** Files and unsaved buffers in the configured languages ("*": all of them). */
export function documentSelector(languages: string[]): DocumentFilter[] {
  const schemes = ['file', 'untitled'];
  if (languages.length === 0 || languages.includes('*')) {
    return schemes.map((scheme) => ({ scheme }));
  }
  return languages.flatMap((language) => schemes.map((scheme) => ({ scheme, language })));
}
