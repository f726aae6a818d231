-- PostfixAdmin schema on MariaDB/MySQL, as its installer creates it (see README.md).
CREATE TABLE config (
  `id` int(11) not null auto_increment primary key,
  `name` VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL DEFAULT '',
  `value` VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL DEFAULT '',
  UNIQUE name (`name`)
) COMMENT = 'PostfixAdmin settings';
INSERT INTO config (name, value) VALUES ('version', '1849');

CREATE TABLE admin (
  `username` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `password` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `superadmin` tinyint(1) NOT NULL DEFAULT '0',
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  `phone` varchar(30) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  `email_other` varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  `token` varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  `token_validity` datetime NOT NULL default '2000-01-01 00:00:00',
  `totp_secret` varchar(255) CHARACTER SET utf8mb4 DEFAULT NULL,
  PRIMARY KEY (`username`)
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - Virtual Admins';

CREATE TABLE domain (
  `domain` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `description` varchar(255) CHARACTER SET utf8mb4 NOT NULL,
  `aliases` int(10) NOT NULL default '0',
  `mailboxes` int(10) NOT NULL default '0',
  `maxquota` bigint(20) NOT NULL default '0',
  `quota` bigint(20) NOT NULL default '0',
  `transport` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `backupmx` tinyint(1) NOT NULL default '0',
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  `password_expiry` int DEFAULT 0,
  PRIMARY KEY (`domain`)
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - Virtual Domains';

CREATE TABLE alias (
  `address` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `goto` text COLLATE latin1_general_ci NOT NULL,
  `domain` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  PRIMARY KEY (`address`),
  KEY `domain` (`domain`)
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - Virtual Aliases';

CREATE TABLE alias_domain (
  `alias_domain` varchar(255) COLLATE latin1_general_ci NOT NULL DEFAULT '',
  `target_domain` varchar(255) COLLATE latin1_general_ci NOT NULL DEFAULT '',
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  PRIMARY KEY (`alias_domain`),
  KEY `active` (`active`),
  KEY `target_domain` (`target_domain`)
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - Domain Aliases';

CREATE TABLE mailbox (
  `username` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `password` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `name` varchar(255) CHARACTER SET utf8mb4 NOT NULL,
  `maildir` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `quota` bigint(20) NOT NULL default '0',
  `local_part` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `domain` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  `phone` varchar(30) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  `email_other` varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  `token` varchar(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT '',
  `token_validity` datetime NOT NULL default '2000-01-01 00:00:00',
  `password_expiry` datetime NOT NULL default '2000-01-01 00:00:00',
  `totp_secret` varchar(255) CHARACTER SET utf8mb4 DEFAULT NULL,
  `smtp_active` tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (`username`),
  KEY `domain` (`domain`)
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - Virtual Mailboxes';

CREATE TABLE log (
  `timestamp` datetime NOT NULL default '2000-01-01 00:00:00',
  `username` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `domain` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `action` varchar(255) COLLATE latin1_general_ci NOT NULL,
  `data` text COLLATE latin1_general_ci NOT NULL,
  `id` int(11) not null auto_increment primary key,
  KEY timestamp (`timestamp`),
  KEY `domain_timestamp` (`domain`, `timestamp`)
) CHARACTER SET latin1 COLLATE latin1_general_ci COMMENT='Postfix Admin - Log';
