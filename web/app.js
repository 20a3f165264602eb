// The monitor page's logic: follows /events, keeps a model of kernels and executions, and draws it (text only via DOM, never HTML).
(function () {
  'use strict';

  var params = new URLSearchParams(location.search);
  var TOKEN = params.get('token') || '';
  var NOTEBOOK = params.get('notebook') || '';
  var FINISHED_KEPT = 50;
  var ACTIVITY_KEPT = 30;
  /** Characters of one stream output kept on the page; the server keeps everything. */
  var STREAM_KEPT = 200000;
  var BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

  // ---------------------------------------------------------------- model

  var model = emptyModel();

  function emptyModel() {
    return {
      version: '',
      kernels: new Map(), // notebook path -> { kernel_name, status, detail }
      queues: new Map(), // notebook path -> [execution id]
      running: new Map(), // notebook path -> execution id
      executions: new Map(), // id -> execution
      finished: [], // ids, newest first
      activity: [], // { time, path, how }
    };
  }

  function execution(fields) {
    return {
      id: fields.execution_id,
      notebook: fields.notebook_path,
      cellId: fields.cell_id || null,
      kind: fields.kind || 'cell',
      code: fields.code || '',
      state: fields.state || 'pending',
      count: fields.execution_count == null ? null : fields.execution_count,
      durationMs: fields.duration_ms == null ? null : fields.duration_ms,
      statusText: fields.status_text || null,
      startedAt: fields.started_at ? Date.parse(fields.started_at) : null,
      outputs: [],
      outputsOmitted: !!fields.outputs_omitted,
      pendingClear: false,
      version: 0,
      view: null,
    };
  }

  function textOf(value) {
    if (Array.isArray(value)) return value.join('');
    return typeof value === 'string' ? value : '';
  }

  /** Outputs as nbformat has them (from the hello snapshot) in the page's own form. */
  function fromNbformat(output) {
    switch (output.output_type) {
      case 'stream':
        return { kind: 'stream', name: output.name === 'stderr' ? 'stderr' : 'stdout', text: textOf(output.text), version: 0 };
      case 'error':
        return { kind: 'error', ename: String(output.ename || ''), evalue: String(output.evalue || ''), traceback: (output.traceback || []).map(String), version: 0 };
      case 'display_data':
      case 'execute_result':
        return { kind: 'data', data: output.data || {}, displayId: (output.transient && output.transient.display_id) || null, version: 0 };
      default:
        return null;
    }
  }

  /** Applies one iopub message (as the kernel sent it) to an execution's outputs. */
  function applyOutput(exec, msgType, content) {
    if (msgType === 'clear_output') {
      if (content.wait) exec.pendingClear = true;
      else exec.outputs = [];
      return;
    }
    if (msgType === 'update_display_data') {
      var id = content.transient && content.transient.display_id;
      model.executions.forEach(function (other) {
        other.outputs.forEach(function (output) {
          if (output.kind === 'data' && id && output.displayId === id) {
            output.data = content.data || {};
            output.version += 1;
            other.version += 1;
          }
        });
      });
      return;
    }
    if (exec.pendingClear) {
      exec.outputs = [];
      exec.pendingClear = false;
    }
    if (msgType === 'stream') {
      var name = content.name === 'stderr' ? 'stderr' : 'stdout';
      var last = exec.outputs[exec.outputs.length - 1];
      if (last && last.kind === 'stream' && last.name === name) {
        last.text = appendStream(last.text, String(content.text || ''));
        last.version += 1;
      } else {
        exec.outputs.push({ kind: 'stream', name: name, text: appendStream('', String(content.text || '')), version: 0 });
      }
      return;
    }
    var output = fromNbformat({
      output_type: msgType,
      name: content.name,
      text: content.text,
      data: content.data,
      transient: content.transient,
      ename: content.ename,
      evalue: content.evalue,
      traceback: content.traceback,
    });
    if (output) exec.outputs.push(output);
  }

  /** Appends stream text the way a terminal shows it: a carriage return rewrites the current line. */
  function appendStream(text, chunk) {
    var combined = text + chunk;
    if (combined.indexOf('\r') >= 0) {
      combined = combined
        .split('\n')
        .map(function (line) {
          var parts = line.split('\r');
          for (var i = parts.length - 1; i >= 0; i--) if (parts[i] !== '') return parts[i];
          return '';
        })
        .join('\n');
    }
    if (combined.length > STREAM_KEPT) combined = '…\n' + combined.slice(combined.length - STREAM_KEPT);
    return combined;
  }

  function finish(exec) {
    model.finished = model.finished.filter(function (id) {
      return id !== exec.id;
    });
    model.finished.unshift(exec.id);
    while (model.finished.length > FINISHED_KEPT) {
      var dropped = model.finished.pop();
      var old = model.executions.get(dropped);
      if (old && !isRunning(old)) model.executions.delete(dropped);
    }
  }

  function isRunning(exec) {
    return model.running.get(exec.notebook) === exec.id;
  }

  function removeFromQueue(notebook, id) {
    var queue = model.queues.get(notebook);
    if (!queue) return;
    var at = queue.indexOf(id);
    if (at >= 0) queue.splice(at, 1);
  }

  function fromHello(hello) {
    var activity = model.activity;
    model = emptyModel();
    model.activity = activity;
    model.version = hello.version || '';
    (hello.kernels || []).forEach(function (k) {
      model.kernels.set(k.notebook_path, { name: k.kernel_name, status: k.status, detail: null });
    });
    // Oldest first, so that `finish` leaves the newest on top.
    (hello.recent || []).slice().reverse().forEach(function (r) {
      var exec = execution(r);
      exec.outputs = (r.outputs || []).map(fromNbformat).filter(Boolean);
      model.executions.set(exec.id, exec);
      finish(exec);
    });
    (hello.notebooks || []).forEach(function (n) {
      if (n.running) {
        var exec = execution(Object.assign({ notebook_path: n.notebook_path }, n.running));
        exec.outputs = (n.running.outputs || []).map(fromNbformat).filter(Boolean);
        model.executions.set(exec.id, exec);
        model.running.set(n.notebook_path, exec.id);
      }
      model.queues.set(
        n.notebook_path,
        (n.queued || []).map(function (q) {
          var exec = execution(Object.assign({ notebook_path: n.notebook_path }, q));
          model.executions.set(exec.id, exec);
          return exec.id;
        }),
      );
    });
  }

  function apply(event) {
    var exec = event.execution_id ? model.executions.get(event.execution_id) : null;
    switch (event.type) {
      case 'hello':
        fromHello(event);
        break;
      case 'execution.queued':
        exec = execution(event);
        model.executions.set(exec.id, exec);
        if (!model.queues.has(exec.notebook)) model.queues.set(exec.notebook, []);
        model.queues.get(exec.notebook).push(exec.id);
        break;
      case 'execution.started':
        if (!exec) {
          exec = execution(event);
          model.executions.set(exec.id, exec);
        }
        removeFromQueue(exec.notebook, exec.id);
        exec.state = 'running';
        exec.startedAt = Date.parse(event.time);
        model.running.set(exec.notebook, exec.id);
        break;
      case 'execution.output':
        if (exec) {
          applyOutput(exec, event.msg_type, event.content || {});
          exec.version += 1;
        }
        break;
      case 'execution.state':
        if (exec && exec.state !== event.state) {
          exec.state = event.state;
          exec.version += 1;
        }
        break;
      case 'execution.finished':
        if (!exec) {
          exec = execution(event);
          model.executions.set(exec.id, exec);
        }
        exec.state = event.state;
        exec.count = event.execution_count;
        exec.durationMs = event.duration_ms;
        exec.statusText = event.status_text;
        exec.version += 1;
        removeFromQueue(exec.notebook, exec.id);
        if (model.running.get(exec.notebook) === exec.id) model.running.delete(exec.notebook);
        finish(exec);
        break;
      case 'kernel.status':
        var kernel = model.kernels.get(event.notebook_path) || { name: null, status: 'starting', detail: null };
        kernel.status = event.status === 'started' ? 'idle' : event.status;
        if (event.kernel_name) kernel.name = event.kernel_name;
        kernel.detail = event.detail || null;
        model.kernels.set(event.notebook_path, kernel);
        break;
      case 'notebook.changed':
        model.activity.unshift({
          time: new Date(event.time),
          path: event.notebook_path,
          how: event.deleted ? 'deleted on disk' : event.source === 'disk' ? 'changed on disk' : 'saved by the server',
        });
        model.activity.length = Math.min(model.activity.length, ACTIVITY_KEPT);
        break;
      case 'gap':
        // Some events never reached us: a fresh snapshot is the only way to be sure of the state again.
        showBanner('This page fell behind and missed ' + event.dropped + ' events; catching up…', false);
        reconnect(250);
        return;
      default:
        return;
    }
    scheduleRender();
  }

  // ---------------------------------------------------------------- drawing

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = String(text);
    return node;
  }

  var STATE_BADGE = {
    succeeded: 'ok',
    failed: 'bad',
    lost: 'bad',
    timed_out: 'bad',
    cancelled: 'warn',
    interrupted: 'warn',
    running: 'busy',
    awaiting_input: 'warn',
    pending: '',
  };
  var KERNEL_BADGE = { idle: 'ok', busy: 'busy', starting: 'warn', restarting: 'warn', unresponsive: 'bad', dead: 'bad', shutdown: '' };

  function badge(text, tone) {
    return el('span', 'badge' + (tone ? ' ' + tone : ''), text.replace(/_/g, ' '));
  }

  function duration(ms) {
    if (ms == null) return '';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    var minutes = Math.floor(ms / 60000);
    return minutes + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
  }

  function firstLine(code) {
    var lines = code.split('\n').filter(function (line) {
      return line.trim() !== '';
    });
    return (lines[0] || '(empty)') + (lines.length > 1 ? '  …' : '');
  }

  function stripAnsi(text) {
    return text.replace(/\u001b\[[0-9;?]*[ -\/]*[@-~]/g, '');
  }

  var BASE64 = /^[A-Za-z0-9+/=\s]+$/;

  /** One output's node, rebuilt only when that output changed. */
  function outputNode(output) {
    if (output.node && output.nodeVersion === output.version) return output.node;
    var node;
    if (output.kind === 'stream') {
      node = output.node && output.node.tagName === 'PRE' ? output.node : el('pre', 'output-text ' + output.name);
      node.textContent = output.text;
    } else if (output.kind === 'error') {
      node = el('pre', 'output-text error', stripAnsi(output.traceback.length ? output.traceback.join('\n') : output.ename + ': ' + output.evalue));
    } else {
      node = dataNode(output.data);
    }
    output.node = node;
    output.nodeVersion = output.version;
    return node;
  }

  function dataNode(data) {
    var images = [
      ['image/png', 'image/png'],
      ['image/jpeg', 'image/jpeg'],
      ['image/gif', 'image/gif'],
    ];
    for (var i = 0; i < images.length; i++) {
      var value = textOf(data[images[i][0]]);
      if (value && BASE64.test(value)) {
        var img = el('img', 'output-image');
        img.alt = textOf(data['text/plain']) || 'image output';
        img.src = 'data:' + images[i][1] + ';base64,' + value.replace(/\s+/g, '');
        return img;
      }
    }
    var svg = textOf(data['image/svg+xml']);
    if (svg) {
      // As an <img>, an SVG cannot run scripts or reach the page.
      var pic = el('img', 'output-image');
      pic.alt = 'SVG output';
      pic.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg);
      return pic;
    }
    var plain = textOf(data['text/plain']);
    if (plain) return el('pre', 'output-text', stripAnsi(plain));
    var markdown = textOf(data['text/markdown']) || textOf(data['text/latex']) || textOf(data['application/json'] && JSON.stringify(data['application/json'], null, 2));
    if (markdown) return el('pre', 'output-text', markdown);
    var kinds = Object.keys(data).join(', ');
    return el('div', 'note', 'Output of type ' + (kinds || 'unknown') + ' is not shown here.');
  }

  function renderOutputs(exec, container) {
    var nodes = exec.outputs.map(outputNode);
    if (exec.outputsOmitted) nodes.push(el('div', 'note', 'Outputs are too large for the live view; read them with get_execution.'));
    container.replaceChildren.apply(container, nodes);
  }

  function executionCard(exec, open) {
    var running = isRunning(exec);
    if (exec.view && exec.view.running === running && exec.view.version === exec.version) return exec.view.node;
    var card;
    var head = el('div', 'card-head');
    if (running) {
      card = el('div', 'card execution running');
    } else {
      card = el('details', 'card execution');
      // A reader's own open/close choice survives redraws; a card that just finished starts open.
      card.open = exec.view && exec.view.node.tagName === 'DETAILS' ? exec.view.node.open : open;
      var summary = el('summary', '');
      head.appendChild(el('span', 'chevron', '▸'));
      summary.appendChild(head);
      card.appendChild(summary);
    }
    card.dataset.executionId = exec.id;
    card.dataset.state = exec.state;
    head.appendChild(badge(exec.state, STATE_BADGE[exec.state]));
    head.appendChild(el('span', 'title', exec.notebook));
    if (exec.kind === 'code') head.appendChild(el('span', 'kind', 'code'));
    if (exec.count != null) head.appendChild(el('span', 'exec-count', '[' + exec.count + ']'));
    if (!running) head.appendChild(el('span', 'first-line', firstLine(exec.code)));
    var meta = el('span', 'meta', running ? '' : duration(exec.durationMs));
    if (running) meta.dataset.startedAt = String(exec.startedAt || Date.now());
    head.appendChild(meta);
    if (running) card.appendChild(head);
    card.appendChild(el('pre', 'code', exec.code));
    if (exec.statusText && !running && exec.state !== 'succeeded') card.appendChild(el('div', 'status-text', exec.statusText));
    var outputs = el('div', 'outputs');
    renderOutputs(exec, outputs);
    card.appendChild(outputs);
    exec.view = { node: card, running: running, version: exec.version };
    return card;
  }

  function kernelCard(path, kernel) {
    var card = el('div', 'card kernel');
    card.dataset.notebook = path;
    var head = el('div', 'card-head');
    head.appendChild(el('span', 'title', path));
    var meta = el('span', 'meta');
    meta.appendChild(badge(kernel.status, KERNEL_BADGE[kernel.status]));
    head.appendChild(meta);
    card.appendChild(head);
    var queue = model.queues.get(path) || [];
    var detail = [kernel.name, kernel.detail, queue.length ? queue.length + ' queued' : 'queue empty']
      .filter(function (part) {
        return part;
      })
      .join(' · ');
    card.appendChild(el('div', 'detail', detail));
    if (queue.length) {
      var list = el('ol', 'queue');
      queue.forEach(function (id, i) {
        var exec = model.executions.get(id);
        if (!exec) return;
        var item = el('li', '');
        item.dataset.executionId = id;
        item.appendChild(el('span', 'pos', String(i + 1)));
        item.appendChild(el('code', '', firstLine(exec.code)));
        list.appendChild(item);
      });
      card.appendChild(list);
    }
    return card;
  }

  function empty(text) {
    return el('div', 'empty', text);
  }

  var renderScheduled = false;

  function scheduleRender() {
    if (renderScheduled) return;
    renderScheduled = true;
    requestAnimationFrame(render);
  }

  function render() {
    renderScheduled = false;
    var notebooks = new Set();
    model.kernels.forEach(function (_k, path) {
      notebooks.add(path);
    });
    model.queues.forEach(function (queue, path) {
      if (queue.length) notebooks.add(path);
    });
    var paths = Array.from(notebooks).sort();
    var kernels = document.getElementById('kernels');
    kernels.replaceChildren.apply(
      kernels,
      paths.length
        ? paths.map(function (path) {
            return kernelCard(path, model.kernels.get(path) || { name: null, status: 'not started', detail: null });
          })
        : [empty('No kernels yet. They appear here when an agent runs a cell.')],
    );

    var running = document.getElementById('running');
    var runningIds = Array.from(model.running.values());
    running.replaceChildren.apply(
      running,
      runningIds.length
        ? runningIds.map(function (id) {
            return executionCard(model.executions.get(id), true);
          })
        : [empty('Nothing is running.')],
    );
    // Streaming output follows its newest line.
    running.querySelectorAll('.output-text').forEach(function (pre) {
      pre.scrollTop = pre.scrollHeight;
    });

    var finished = document.getElementById('finished');
    finished.replaceChildren.apply(
      finished,
      model.finished.length
        ? model.finished.map(function (id, i) {
            return executionCard(model.executions.get(id), i < 3);
          })
        : [empty('No finished executions yet.')],
    );

    var activity = document.getElementById('activity');
    activity.replaceChildren.apply(
      activity,
      model.activity.length
        ? model.activity.map(function (entry) {
            var item = el('li', '');
            var time = el('time', '', entry.time.toLocaleTimeString());
            time.dateTime = entry.time.toISOString();
            item.appendChild(time);
            item.appendChild(el('span', 'path', entry.path));
            item.appendChild(el('span', 'how', entry.how));
            return item;
          })
        : [el('li', 'note', 'No changes seen since this page connected.')],
    );

    var queued = 0;
    model.queues.forEach(function (queue) {
      queued += queue.length;
    });
    var summary = document.getElementById('summary');
    summary.replaceChildren(
      el('b', '', String(model.kernels.size)),
      document.createTextNode(model.kernels.size === 1 ? ' kernel · ' : ' kernels · '),
      el('b', '', String(model.running.size)),
      document.createTextNode(' running · '),
      el('b', '', String(queued)),
      document.createTextNode(' queued'),
    );
    document.getElementById('scope').textContent = (NOTEBOOK ? NOTEBOOK : 'all notebooks') + (model.version ? ' · server ' + model.version : '');
    tickElapsed();
  }

  /** The running cards' clocks. */
  function tickElapsed() {
    document.querySelectorAll('.execution.running .meta[data-started-at]').forEach(function (meta) {
      meta.textContent = 'running for ' + duration(Date.now() - Number(meta.dataset.startedAt));
    });
  }
  setInterval(tickElapsed, 1000);

  // ---------------------------------------------------------------- connection

  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var everConnected = false;

  function setConnection(state, text) {
    var node = document.getElementById('connection');
    node.dataset.state = state;
    document.getElementById('connection-text').textContent = text;
  }

  function showBanner(text, withButton) {
    document.getElementById('banner-text').textContent = text;
    document.getElementById('retry').hidden = !withButton;
    document.getElementById('banner').hidden = false;
  }

  function hideBanner() {
    document.getElementById('banner').hidden = true;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/events?token=' + encodeURIComponent(TOKEN) + (NOTEBOOK ? '&notebook=' + encodeURIComponent(NOTEBOOK) : '');
    setConnection(everConnected ? 'down' : 'connecting', everConnected ? 'reconnecting…' : 'connecting…');
    var ws = new WebSocket(url);
    socket = ws;
    ws.onmessage = function (message) {
      if (ws !== socket) return;
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      if (event.type === 'hello') {
        attempt = 0;
        everConnected = true;
        hideBanner();
        setConnection('live', 'live');
      }
      apply(event);
    };
    ws.onclose = function (close) {
      if (ws !== socket) return;
      socket = null;
      lost(close.code === 4008 ? 'This page was too slow to keep up and was disconnected.' : 'Connection to the server lost.');
    };
  }

  function lost(why) {
    var wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    // A little jitter, so many pages do not all come back at the same instant.
    wait = Math.round(wait * (0.8 + Math.random() * 0.4));
    attempt += 1;
    setConnection('down', 'disconnected');
    var seconds = Math.max(1, Math.round(wait / 1000));
    showBanner(why + ' Reconnecting in ' + seconds + ' s… (the view catches up when it is back)', true);
    retryTimer = setTimeout(connect, wait);
  }

  /** Drops the current connection and opens a new one after `wait` ms (used after a gap). */
  function reconnect(wait) {
    var old = socket;
    socket = null;
    if (old) old.close(1000, 'resync');
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, wait);
  }

  function start() {
    document.getElementById('retry').addEventListener('click', function () {
      attempt = 0;
      connect();
    });
    render();
    connect();
  }

  // For tests and the curious: the connection, to close it by hand and watch the page recover.
  window.monitor = {
    get socket() {
      return socket;
    },
    /** Connection attempts that failed since the last one that worked. */
    get failedAttempts() {
      return attempt;
    },
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
