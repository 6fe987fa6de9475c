-- The console's device search and sort at fleet scale: a serial number or hardware id found by
-- its first characters, and the fleet listed in serial number order, each one range of an
-- index (SQLite compares text byte by byte; hardware_id's UNIQUE index serves its search).
CREATE INDEX devices_serial_order ON devices (serial_number, id);
