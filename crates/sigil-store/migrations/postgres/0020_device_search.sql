-- The console's device search and sort at fleet scale: a serial number or hardware id found by
-- its first characters, and the fleet listed in serial number order, each one range of an
-- index. Byte order ("C") whatever the database's collation, so a prefix is a range.
CREATE INDEX devices_serial_order ON devices (serial_number COLLATE "C", id);
CREATE INDEX devices_hardware_prefix ON devices (hardware_id COLLATE "C");
