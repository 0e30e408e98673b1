// A minimal LSP client over one WebSocket (JSON-RPC 2.0, one message per frame, text or binary, the way
// `unmask serve --ws` speaks): requests with cancellation, notifications, and answers to the
// few requests the server sends (workspace/configuration and friends). Nothing else.

export class LspSocket {
  constructor(url, { settings = {}, onNotification = () => {}, onClose = () => {} } = {}) {
    this.url = url;
    this.settings = settings;
    this.onNotification = onNotification;
    this.onClose = onClose;
    this.nextId = 1;
    this.pending = new Map();
  }

  /** Open the socket and run the initialize handshake; resolves with the server's capabilities. */
  async start(capabilities) {
    this.ws = new WebSocket(this.url);
    await new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
    });
    this.ws.binaryType = 'arraybuffer'; // pygls sends binary frames
    const utf8 = new TextDecoder();
    this.ws.onmessage = (ev) => this.receive(JSON.parse(typeof ev.data === 'string' ? ev.data : utf8.decode(ev.data)));
    this.ws.onclose = () => {
      for (const { reject } of this.pending.values()) reject(new Error('connection closed'));
      this.pending.clear();
      this.onClose();
    };
    const init = await this.request('initialize', {
      processId: null,
      clientInfo: { name: 'unmask playground' },
      rootUri: null,
      capabilities,
      initializationOptions: this.settings,
    });
    this.notify('initialized', {});
    return init.capabilities;
  }

  send(msg) {
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', ...msg }));
  }

  notify(method, params) {
    this.send({ method, params });
  }

  /** A request; `token` (Monaco's CancellationToken) sends $/cancelRequest when cancelled. */
  request(method, params, token) {
    const id = this.nextId++;
    const done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.send({ id, method, params });
    token?.onCancellationRequested(() => this.notify('$/cancelRequest', { id }));
    return done;
  }

  receive(msg) {
    if (msg.id !== undefined && msg.method === undefined) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (p) (msg.error ? p.reject(Object.assign(new Error(msg.error.message), msg.error)) : p.resolve(msg.result));
    } else if (msg.id !== undefined) {
      // a request from the server: answer what a browser page can
      const result = msg.method === 'workspace/configuration' ? msg.params.items.map(() => this.settings) : null;
      this.send({ id: msg.id, result });
    } else {
      this.onNotification(msg.method, msg.params);
    }
  }

  close() {
    this.ws?.close();
  }
}
