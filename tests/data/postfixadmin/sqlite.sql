-- PostfixAdmin schema on SQLite, as its installer creates it (see README.md).
PRAGMA encoding = "UTF-8";
CREATE TABLE IF NOT EXISTS config (
  `id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  `name` TEXT NOT NULL UNIQUE DEFAULT '',
  `value` TEXT NOT NULL DEFAULT ''
);
INSERT INTO config (name, value) VALUES ('version', '1849');

CREATE TABLE IF NOT EXISTS admin (
  `username` varchar(255) NOT NULL,
  `password` varchar(255) NOT NULL,
  `superadmin` tinyint(1) NOT NULL DEFAULT '0',
  `created` datetime NOT NULL default '2000-01-01',
  `modified` datetime NOT NULL default '2000-01-01',
  `active` tinyint(1) NOT NULL DEFAULT '1',
  `phone` varchar(30) NOT NULL DEFAULT '',
  `email_other` varchar(255) NOT NULL DEFAULT '',
  `token` varchar(255) NOT NULL DEFAULT '',
  `token_validity` datetime NOT NULL default '2000-01-01',
  PRIMARY KEY (`username`));

CREATE TABLE IF NOT EXISTS alias (
  `address` varchar(255) NOT NULL,
  `goto` text NOT NULL,
  `domain` varchar(255) NOT NULL,
  `created` datetime NOT NULL default '2000-01-01',
  `modified` datetime NOT NULL default '2000-01-01',
  `active` tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (`address`));

CREATE TABLE IF NOT EXISTS alias_domain (
  `alias_domain` varchar(255) NOT NULL,
  `target_domain` varchar(255) NOT NULL,
  `created` datetime NOT NULL default '2000-01-01',
  `modified` datetime NOT NULL default '2000-01-01',
  `active` tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (`alias_domain`));

CREATE TABLE IF NOT EXISTS domain (
  `domain` varchar(255) NOT NULL,
  `description` varchar(255) NOT NULL,
  `aliases` int(11) NOT NULL DEFAULT 0,
  `mailboxes` int(11) NOT NULL DEFAULT 0,
  `maxquota` bigint(20) NOT NULL DEFAULT 0,
  `quota` bigint(20) NOT NULL DEFAULT 0,
  `transport` varchar(255) NOT NULL,
  `backupmx` tinyint(1) NOT NULL DEFAULT '0',
  `created` datetime NOT NULL default '2000-01-01',
  `modified` datetime NOT NULL default '2000-01-01',
  `active` tinyint(1) NOT NULL DEFAULT '1',
  `password_expiry` int DEFAULT 0,
  PRIMARY KEY (`domain`));

CREATE TABLE log (
  `id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
  `timestamp` datetime NOT NULL default '2000-01-01',
  `username` varchar(255) NOT NULL,
  `domain` varchar(255) NOT NULL,
  `action` varchar(255) NOT NULL,
  `data` text NOT NULL);

CREATE TABLE IF NOT EXISTS mailbox (
  `username` varchar(255) NOT NULL,
  `password` varchar(255) NOT NULL,
  `name` varchar(255) NOT NULL,
  `maildir` varchar(255) NOT NULL,
  `quota` bigint(20) NOT NULL DEFAULT 0,
  `local_part` varchar(255) NOT NULL,
  `domain` varchar(255) NOT NULL,
  `created` datetime NOT NULL default '2000-01-01',
  `modified` datetime NOT NULL default '2000-01-01',
  `active` tinyint(1) NOT NULL DEFAULT '1',
  `phone` varchar(30) NOT NULL DEFAULT '',
  `email_other` varchar(255) NOT NULL DEFAULT '',
  `token` varchar(255) NOT NULL DEFAULT '',
  `token_validity` datetime NOT NULL default '2000-01-01',
  `password_expiry` datetime NOT NULL default '2000-01-01',
  `smtp_active` tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (`username`));
