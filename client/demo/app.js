// The demo page's logic: the availability board and the admin feed.
//
// Runs in the browser, loaded by index.html from the demo server
// (server.js). The board comes from `/api/availability` (the booking desk's
// state) and is then kept current by fanout's `availability.updated`
// messages, updating each schedule's row in place. Because fanout does not
// replay, the board is fetched again on every `open`, which after a reconnect
// also says how long the page was away. A visitor whose session cookie the
// server recognised also gets the admin feed: full events on `/ws`.

import { connect } from '../src/fanout.js';

const config = await (await fetch('/config.json')).json();

/** schedule_id -> its row's elements. */
const rows = new Map();

/** Builds the board from a snapshot: one card per course, one row per schedule. */
function renderBoard({ courses }) {
  const board = document.querySelector('#board');
  board.replaceChildren();
  rows.clear();
  for (const course of courses) {
    const card = element('article', { className: 'course', dataset: { course: course.course_id } });
    card.append(element('h2', { textContent: course.title }), element('p', { className: 'code', textContent: course.course_id }));
    const list = element('ul');
    for (const schedule of course.schedules) {
      const row = element('li', { dataset: { schedule: schedule.schedule_id } });
      const meter = element('meter', { min: 0, max: schedule.capacity, low: 2, high: schedule.capacity / 2, optimum: schedule.capacity });
      const slots = element('span', { className: 'slots' });
      row.append(element('span', { className: 'when', textContent: schedule.label }), meter, slots);
      list.append(row);
      rows.set(schedule.schedule_id, { row, meter, slots, capacity: schedule.capacity });
      showSlots(schedule.schedule_id, schedule.slots_remaining, false);
    }
    card.append(list);
    board.append(card);
  }
}

/** Shows a schedule's free slots; `flash` marks a live change. */
function showSlots(scheduleId, slotsRemaining, flash) {
  const cells = rows.get(scheduleId);
  if (!cells || typeof slotsRemaining !== 'number') return;
  cells.meter.value = slotsRemaining;
  cells.slots.textContent = slotsRemaining === 0 ? 'full' : `${slotsRemaining} of ${cells.capacity} free`;
  cells.row.dataset.slots = String(slotsRemaining);
  cells.row.classList.toggle('full', slotsRemaining === 0);
  if (flash) {
    cells.row.classList.remove('flash');
    void cells.row.offsetWidth; // restart the animation
    cells.row.classList.add('flash');
  }
}

async function refetchBoard() {
  renderBoard(await (await fetch('/api/availability')).json());
}

/** Mirrors a client's connection state into a status line. */
function showState(client, selector, note) {
  const line = document.querySelector(selector);
  client.on('state', (event) => {
    line.dataset.state = event.state;
    line.textContent = describe(event);
  });
  client.on('open', ({ awayMs }) => {
    if (awayMs !== null) note(`Reconnected after ${seconds(awayMs)} away; anything published meanwhile was missed, so the page refetched.`);
  });
}

function describe(event) {
  switch (event.state) {
    case 'connecting':
      return 'connecting…';
    case 'open':
      return 'live';
    case 'reconnecting':
      return `reconnecting (attempt ${event.attempt}, next try in ${seconds(event.delayMs)}; lost with ${event.code})`;
    case 'closed':
      return `closed: ${event.reason} (${event.code})`;
  }
}

/** An event body as `key value` pairs, every field shown (the admin sees it all). */
function fields(body) {
  const list = element('span', { className: 'fields' });
  for (const [key, value] of Object.entries(body)) {
    const pair = element('span', { textContent: `${key} ` });
    pair.append(element('b', { textContent: typeof value === 'string' ? value : JSON.stringify(value) }));
    list.append(pair);
  }
  return list;
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

function element(tag, props = {}) {
  const { dataset = {}, ...rest } = props;
  const node = Object.assign(document.createElement(tag), rest);
  Object.assign(node.dataset, dataset);
  return node;
}

function noteIn(selector) {
  const note = document.querySelector(selector);
  return (text) => {
    note.textContent = text;
    note.hidden = false;
  };
}

// The public board.
await refetchBoard().catch(() => {}); // the engine may be down: the socket says so
const board = connect(`${config.engineUrl}/ws/availability`);
board.subscribe({ course_id: config.courseIds });
board.on('availability.updated', (message) => showSlots(message.schedule_id, message.slots_remaining, true));
board.on('availability.changed', ({ summary }) => showSlots(summary.schedule_id ?? summary.id, summary.slots_remaining, true));
// Subscriptions are in place on `open`: a fetch from now on misses nothing.
board.on('open', () => refetchBoard().catch(() => {}));
showState(board, '#public-state', noteIn('#public-note'));

// The admin feed.
if (config.admin) {
  document.querySelector('#admin').hidden = false;
  const feed = document.querySelector('#feed');
  const admin = connect(`${config.engineUrl}/ws`);
  admin.subscribe('all');
  admin.on('message', (message) => {
    const body = message.booking ?? message.full_details ?? message.notification ?? message.assessment ?? message.event;
    if (!body) return; // replies, not events
    const item = element('li', { className: message.type.replace('.', '-') });
    item.append(
      element('time', { textContent: new Date(message.timestamp).toLocaleTimeString() }),
      element('strong', { textContent: message.type }),
      fields(body),
    );
    feed.prepend(item);
    while (feed.children.length > 12) feed.lastChild.remove();
  });
  showState(admin, '#admin-state', (text) => feed.prepend(element('li', { className: 'note', textContent: text })));
}

// Sign in/out links for the demo's admin session.
if (config.canLogin) {
  const link = config.admin
    ? element('a', { href: '/logout', textContent: 'Sign out of the admin view' })
    : element('a', { href: '/login', textContent: 'Sign in as the demo admin' });
  document.querySelector('#session-links').append(link);
}
