// The demo's booking desk: a stand-in for the booking service.
//
// Owned by the demo server (server.js), which serves `snapshot()` as the
// page's source of truth and publishes every envelope `book`/`cancel`
// return to Kafka, where fanout picks them up. The envelopes have the shape
// of SPEC §5, so the page gets real `availability.updated` messages and the
// admin view real `booking.created`/`booking.cancelled` ones.
// Invariant: 0 <= slots_remaining <= capacity for every schedule.

/** The courses on the board: a handful, a few schedules each. */
const CATALOGUE = [
  { course_id: 'PIANO-101', title: 'Piano for beginners', schedules: [['Mon 17:00', 8], ['Wed 18:30', 6], ['Sat 10:00', 10]] },
  { course_id: 'GUITAR-201', title: 'Acoustic guitar', schedules: [['Tue 19:00', 12], ['Thu 19:00', 12]] },
  { course_id: 'VIOLIN-301', title: 'Violin, intermediate', schedules: [['Mon 16:00', 4], ['Fri 17:30', 6]] },
  { course_id: 'VOICE-110', title: 'Singing workshop', schedules: [['Wed 20:00', 16], ['Sun 11:00', 14]] },
];

const STUDENTS = ['st-ada', 'st-bo', 'st-chen', 'st-dara', 'st-eli', 'st-femi', 'st-gus', 'st-hana'];

/** Courses, schedules and who holds which seat; produces an envelope per change. */
export class BookingDesk {
  #courses;
  #bookingCount = 0;
  /** schedule_id -> booking ids holding a seat there. */
  #seats = new Map();
  #random;

  /** @param {{random?: () => number}} [options] `random` drives `tick`; injectable for tests. */
  constructor({ random = Math.random } = {}) {
    this.#random = random;
    this.#courses = CATALOGUE.map(({ course_id, title, schedules }) => ({
      course_id,
      title,
      schedules: schedules.map(([label, capacity], i) => {
        const schedule_id = `${course_id.toLowerCase()}-${i + 1}`;
        this.#seats.set(schedule_id, []);
        // Start part-booked, so the board has something to lose and gain.
        const taken = Math.floor(capacity / 2);
        for (let seat = 0; seat < taken; seat++) this.#seats.get(schedule_id).push(this.#nextBookingId());
        return { schedule_id, label, capacity, slots_remaining: capacity - taken };
      }),
    }));
  }

  /** The course ids on the board. */
  get courseIds() {
    return this.#courses.map((course) => course.course_id);
  }

  /** The whole board, as the page fetches it: `{courses: [{course_id, title, schedules}]}`. */
  snapshot() {
    return { courses: structuredClone(this.#courses) };
  }

  /** Books one seat of `scheduleId`; the `booking.created` envelope, or null when full. */
  book(scheduleId, studentId = this.#pick(STUDENTS)) {
    const { course, schedule } = this.#find(scheduleId);
    if (schedule.slots_remaining === 0) return null;
    const bookingId = this.#nextBookingId();
    this.#seats.get(scheduleId).push(bookingId);
    schedule.slots_remaining -= 1;
    return envelope('booking.created', bookingId, studentId, course, schedule);
  }

  /** Cancels one booking of `scheduleId`; the `booking.cancelled` envelope, or null when empty. */
  cancel(scheduleId, studentId = this.#pick(STUDENTS)) {
    const { course, schedule } = this.#find(scheduleId);
    const seats = this.#seats.get(scheduleId);
    if (seats.length === 0) return null;
    const [bookingId] = seats.splice(Math.floor(this.#random() * seats.length), 1);
    schedule.slots_remaining += 1;
    return envelope('booking.cancelled', bookingId, studentId, course, schedule);
  }

  /** One second of business: a random schedule gains or loses a booking. */
  tick() {
    const schedule = this.#pick(this.#courses.flatMap((course) => course.schedules));
    const full = schedule.slots_remaining === 0;
    const empty = schedule.slots_remaining === schedule.capacity;
    const booking = !full && (empty || this.#random() < 0.55);
    return booking ? this.book(schedule.schedule_id) : this.cancel(schedule.schedule_id);
  }

  #find(scheduleId) {
    for (const course of this.#courses) {
      const schedule = course.schedules.find((s) => s.schedule_id === scheduleId);
      if (schedule) return { course, schedule };
    }
    throw new RangeError(`no schedule ${scheduleId}`);
  }

  #pick(list) {
    return list[Math.floor(this.#random() * list.length)];
  }

  #nextBookingId() {
    this.#bookingCount += 1;
    return `bk-${String(this.#bookingCount).padStart(4, '0')}`;
  }
}

/** A SPEC §5 envelope: the Kafka topic and its record value. */
function envelope(topic, bookingId, studentId, course, schedule) {
  return {
    topic,
    value: {
      topic,
      timestamp: new Date().toISOString(),
      event_type: topic,
      payload: {
        id: bookingId,
        action: topic.split('.')[1],
        data: {
          booking_id: bookingId,
          course_id: course.course_id,
          schedule_id: schedule.schedule_id,
          student_id: studentId,
          slots_remaining: schedule.slots_remaining,
        },
      },
    },
  };
}
