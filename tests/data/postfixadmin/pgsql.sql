-- PostfixAdmin schema on PostgreSQL, as its installer creates it (see README.md).
CREATE TABLE config (
  id SERIAL,
  name VARCHAR(20) NOT NULL UNIQUE,
  value VARCHAR(20) NOT NULL,
  PRIMARY KEY(id)
);
INSERT INTO config (name, value) VALUES ('version', '1849');

CREATE TABLE domain (
  domain character varying(255) NOT NULL,
  description character varying(255) NOT NULL default '',
  aliases integer NOT NULL default 0,
  mailboxes integer NOT NULL default 0,
  maxquota bigint NOT NULL default 0,
  quota bigint NOT NULL default 0,
  transport character varying(255) default NULL,
  backupmx boolean NOT NULL default false,
  created timestamp with time zone default now(),
  modified timestamp with time zone default now(),
  active boolean NOT NULL default true,
  password_expiry int DEFAULT 0,
  Constraint "domain_key" Primary Key ("domain")
);
CREATE INDEX domain_domain_active ON domain(domain,active);
COMMENT ON TABLE domain IS 'Postfix Admin - Virtual Domains';

CREATE TABLE admin (
  "username" character varying(255) NOT NULL,
  "password" character varying(255) NOT NULL default '',
  "created" timestamp with time zone default now(),
  "modified" timestamp with time zone default now(),
  "active" boolean NOT NULL default true,
  superadmin BOOLEAN NOT NULL DEFAULT 'f',
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity timestamp with time zone default '2000-01-01',
  totp_secret VARCHAR(255) DEFAULT NULL,
  Constraint "admin_key" Primary Key ("username")
);

CREATE TABLE alias (
  address character varying(255) NOT NULL,
  goto text NOT NULL,
  domain character varying(255) NOT NULL REFERENCES "domain",
  created timestamp with time zone default now(),
  modified timestamp with time zone default now(),
  active boolean NOT NULL default true,
  Constraint "alias_key" Primary Key ("address")
);
CREATE INDEX alias_address_active ON alias(address,active);
CREATE INDEX alias_domain_idx ON alias(domain);
COMMENT ON TABLE alias IS 'Postfix Admin - Virtual Aliases';

CREATE TABLE alias_domain (
  alias_domain character varying(255) NOT NULL REFERENCES domain(domain) ON DELETE CASCADE,
  target_domain character varying(255) NOT NULL REFERENCES domain(domain) ON DELETE CASCADE,
  created timestamp with time zone default now(),
  modified timestamp with time zone default now(),
  active boolean NOT NULL default true,
  PRIMARY KEY(alias_domain)
);
CREATE INDEX alias_domain_active ON alias_domain(alias_domain,active);

CREATE TABLE mailbox (
  username character varying(255) NOT NULL,
  password character varying(255) NOT NULL default '',
  name character varying(255) NOT NULL default '',
  maildir character varying(255) NOT NULL default '',
  quota bigint NOT NULL default 0,
  created timestamp with time zone default now(),
  modified timestamp with time zone default now(),
  active boolean NOT NULL default true,
  domain varchar(255) REFERENCES domain (domain),
  local_part varchar(255) NOT NULL,
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity timestamp with time zone default '2000-01-01',
  password_expiry timestamp with time zone default '2000-01-01',
  totp_secret VARCHAR(255) DEFAULT NULL,
  smtp_active BOOLEAN NOT NULL DEFAULT 't',
  Constraint "mailbox_key" Primary Key ("username")
);
CREATE INDEX mailbox_username_active ON mailbox(username,active);
CREATE INDEX mailbox_domain_idx ON mailbox(domain);
COMMENT ON TABLE mailbox IS 'Postfix Admin - Virtual Mailboxes';

CREATE TABLE log (
  timestamp timestamp with time zone default now(),
  username character varying(255) NOT NULL default '',
  domain character varying(255) NOT NULL default '',
  action character varying(255) NOT NULL default '',
  data text NOT NULL default '',
  id SERIAL primary key
);
CREATE INDEX log_domain_timestamp_idx ON log(domain,timestamp);
COMMENT ON TABLE log IS 'Postfix Admin - Log';
