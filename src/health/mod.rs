//! Health component: ZooKeeper four-letter words sent to each member, parsed into an
//! ensemble view.
